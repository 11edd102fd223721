"""Grad-CAM analysis of a checkpoint on a val set: per-class best/worst/unsure examples, confused pairs, HTML report.

    python -m services.gradcam_analyzer --gradcam.checkpoint runs/phase1/models/best.pt                 # bundled sample
    python -m services.gradcam_analyzer --gradcam.checkpoint best.pt --data.root /data/ILSVRC2012 \\
        --gradcam.method gradcam++

The val set is streamed once under ``no_grad``; only a bounded top-k heap per class (and per confused pair) is
kept, so 1,000 classes x 50,000 images need memory for the selected examples and the (C, C) confusion matrix
only. Grad-CAM then runs on the selected images alone. Writes ``report.html`` (self-contained: every image is a
base64 data URI), ``overlays/*.png``, ``analysis.json``, ``per_class_accuracy.csv`` and the confusion plots to
``--out`` (default: ``<run>/gradcam`` beside the checkpoint's ``models/`` folder).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import heapq
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import cv2
import jinja2
import numpy as np
import torch
import torch.nn as nn

from core.checkpoint import CheckpointMismatchError, check_compatible, load_checkpoint
from core.cli import EXIT_OK, run_entry
from core.config import ExperimentConfig
from core.data.manager import ImageNetDataManager
from core.data.transforms import build_eval_crop
from core.evaluate import predict
from core.logger import progress_bar
from core.model import build_model
from core.prepare import short_class_names
from core.preprocessing import PreprocessingSpec, preprocessing_of_checkpoint
from core.step import resolve_amp, select_device
from utils.metrics import ConfusionMatrix, confused_pairs, per_class_report, topk_correct, write_per_class_csv

log = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++")
"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018), from pytorch-grad-cam."""

KINDS = {
    "confident_correct": "Most confident correct",
    "confident_wrong": "Most confident wrong",
    "unsure_correct": "Least confident correct",
}
"""The three per-class example lists (keyed by the image's true class) and their report headings."""


# ----------------------------------------------------------------------------------------------------------------
# Model from a checkpoint
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint with the class mapping it was trained on.

    Attributes:
        model: in eval mode on the requested device.
        config: the training run's config.
        classes: class identifiers (WNIDs) in output order; class_names: human-readable names.
        weights: which state dict was loaded: 'model_ema' when the checkpoint has one, else 'model'.
        preprocessing: the evaluation preprocessing the checkpoint records (``preprocessing_of_checkpoint``).
    """

    model: nn.Module
    config: ExperimentConfig
    classes: list[str]
    class_names: list[str]
    weights: str
    path: Path
    preprocessing: PreprocessingSpec

    @property
    def short_names(self) -> list[str]:
        """The names plots and reports show (:func:`core.prepare.short_class_names`), in output order."""
        return short_class_names(self.class_names, self.classes)


def load_model(checkpoint: Union[str, Path], device: Union[str, torch.device] = "auto") -> LoadedModel:
    """Rebuild the network of a checkpoint written by :class:`core.trainer.ImageNetTrainer`.

    The EMA weights are preferred when present (they usually evaluate better). The classifier width is read
    from the saved ``fc.weight``, so ``--model.num_classes`` larger than the class list also loads.

    Raises:
        FileNotFoundError / ValueError: as :func:`core.checkpoint.load_checkpoint`; a checkpoint without a
            config or class list.
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    if not ckpt.get("config") or not ckpt.get("classes"):
        raise ValueError(f"{path} has no 'config' or 'classes' entry; it was not written by ImageNetTrainer")
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    weights = "model_ema" if ckpt.get("model_ema") else "model"
    state = ckpt[weights]
    model = build_model(cfg.model.name, num_classes=int(state["fc.weight"].shape[0]),
                        small_input=cfg.model.small_input, zero_init_residual=cfg.model.zero_init_residual,
                        blurpool=cfg.model.blurpool)
    model.load_state_dict(state)
    model.to(select_device(str(device))).eval()
    classes = [str(c) for c in ckpt["classes"]]
    names = [str(n) for n in ckpt.get("class_names") or classes]
    return LoadedModel(model=model, config=cfg, classes=classes, class_names=names, weights=weights, path=path,
                       preprocessing=preprocessing_of_checkpoint(ckpt))


def resnet_target_layer(model: nn.Module, layer: str = "layer4") -> nn.Module:
    """The last block of ``model.<layer>``: ``layer4[-1]`` is the standard Grad-CAM target of a ResNet (the
    last convolutional features before pooling, Selvaraju et al. 2017).

    Raises:
        ValueError: the model has no such stage (the message names the ones it has).
    """
    try:
        stage = model.get_submodule(layer)
    except AttributeError:
        stages = [n for n, _ in model.named_children() if n.startswith("layer")]
        raise ValueError(f"model has no stage {layer!r}; choose one of: {', '.join(stages) or '(none)'}") from None
    return stage[-1] if isinstance(stage, nn.Sequential) else stage


# ----------------------------------------------------------------------------------------------------------------
# The Grad-CAM wrapper
# ----------------------------------------------------------------------------------------------------------------

class GradCamAnalyzer:
    """Grad-CAM / Grad-CAM++ heatmaps of a ResNet, a narrow wrapper over pytorch-grad-cam.

    Use it as a context manager: the forward hooks live exactly as long as the ``with`` block (pytorch-grad-cam
    registers them when its CAM object is built; its own ``__exit__`` swallows IndexErrors, so this class
    releases the hooks itself and lets every exception through). Inputs follow the model's device at each
    call, so the model may be moved between calls.

    Args:
        model: a classifier (N, 3, H, W) -> (N, C); set to eval mode (BatchNorm running statistics).
        method: 'gradcam' or 'gradcam++'.
        target_layer: a module, or the name of a stage whose last block is used (default 'layer4').

    Raises:
        ValueError: unknown method or stage.
    """

    def __init__(self, model: nn.Module, method: str = "gradcam", target_layer: Union[str, nn.Module] = "layer4"):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        self.model, self.method = model, method
        self.target_layer = resnet_target_layer(model, target_layer) if isinstance(target_layer, str) else target_layer
        self._cam = None

    def __enter__(self) -> "GradCamAnalyzer":
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

        cls = GradCAM if self.method == "gradcam" else GradCAMPlusPlus
        self.model.eval()
        self._cam = cls(model=self.model, target_layers=[self.target_layer])
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None
        return None  # never swallow an exception

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def cams(self, images: torch.Tensor, target_classes: Optional[Sequence[int]] = None
             ) -> tuple[np.ndarray, torch.Tensor]:
        """Heatmaps for a batch.

        Args:
            images: (N, 3, H, W) normalised float images (any device; moved to the model's).
            target_classes: N class indices whose score is explained (None = each image's predicted class).

        Returns:
            (cams, logits): cams (N, H, W) float32 in [0, 1], each min-max scaled (pytorch-grad-cam's
            ``scale_cam_image``); logits (N, C) float32 on the CPU.

        Raises:
            RuntimeError: called outside the ``with`` block.
            ValueError: wrong number of target classes.
        """
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if self._cam is None:
            raise RuntimeError("GradCamAnalyzer.cams() must be called inside `with GradCamAnalyzer(...) as cam:`")
        if images.ndim != 4:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        targets = None
        if target_classes is not None:
            if len(target_classes) != images.shape[0]:
                raise ValueError(f"{len(target_classes)} target classes for {images.shape[0]} images")
            targets = [ClassifierOutputTarget(int(c)) for c in target_classes]
        self._cam.device = self.device  # follow the model if it moved since __enter__
        with torch.enable_grad():
            cams = self._cam(input_tensor=images.to(self.device), targets=targets)
        logits = self._cam.outputs.detach().float().cpu()
        self._cam.activations_and_grads.clear()
        return np.asarray(cams, dtype=np.float32), logits


def overlay_cam(image: np.ndarray, cam: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """Blend a heatmap over an image: (H, W, 3) uint8 RGB and a (h, w) map in [0, 1] (resized to H x W) ->
    (H, W, 3) uint8 RGB, with the JET colormap (red = high), via pytorch-grad-cam's ``show_cam_on_image``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    h, w = image.shape[:2]
    mask = cv2.resize(np.asarray(cam, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(image.astype(np.float32) / 255.0, np.clip(mask, 0, 1), use_rgb=True,
                             image_weight=image_weight)


# ----------------------------------------------------------------------------------------------------------------
# Streaming pass: bounded heaps, no stored outputs
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Example:
    """One val image picked for the report.

    Attributes:
        position: index into the val dataset (``data.val_dataset()[position]``).
        true, pred: class indices; confidence: softmax probability of ``pred``; true_prob: of ``true``.
        source: the image's file (or dataset row); overlays: target class -> overlay PNG path.
    """

    position: int
    true: int
    pred: int
    confidence: float
    true_prob: float
    source: str = ""
    overlays: dict[int, str] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.true == self.pred


class _TopK:
    """The k items with the largest keys seen so far (a min-heap of size k); ties keep the earlier item."""

    def __init__(self, k: int):
        self.k, self.heap = k, []

    def push(self, key: float, position: int, item: Any) -> None:
        entry = (key, -position, item)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        elif entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    def items(self) -> list:
        return [e[2] for e in sorted(self.heap, key=lambda e: e[:2], reverse=True)]


@dataclass
class PredictionSummary:
    """What the streaming pass keeps: counts, the confusion matrix and bounded example lists.

    Attributes:
        confusion: (C, C) int64, rows = true class.
        examples: kind (see ``KINDS``) -> class -> up to k :class:`Example`, best first.
        pair_examples: (true, pred) -> up to m most confident wrong examples of that pair.
    """

    num_images: int
    top1: float
    top5: float
    loss: float
    confusion: torch.Tensor
    examples: dict[str, dict[int, list[Example]]]
    pair_examples: dict[tuple[int, int], list[Example]]


@torch.no_grad()
def collect_predictions(model: nn.Module, loader: Iterable, num_classes: int, top_k: int = 3,
                        pair_examples: int = 3, amp_dtype: Optional[torch.dtype] = None,
                        progress: bool = True) -> PredictionSummary:
    """Stream a val loader once and keep, per true class, the ``top_k`` most confident correct, most confident
    wrong and least confident correct images, and per (true, predicted) pair the ``pair_examples`` most
    confident errors. Memory: O(C^2) for the confusion matrix plus O(C k + errors) small tuples; no logits or
    images are stored.

    Args:
        model: classifier on its device, put in eval mode here.
        loader: yields (images (B, 3, H, W), targets (B,)) in a fixed order; an image's position is its running
            index in that order (``data.val_loader`` guarantees it).
        num_classes: C, the number of classes of the data (the model may have more outputs).
        progress: a bar over the batches.

    Raises:
        ValueError: ``top_k`` or ``pair_examples`` < 1, or an empty loader.
    """
    if top_k < 1 or pair_examples < 1:
        raise ValueError(f"top_k and pair_examples must be >= 1, got {top_k}, {pair_examples}")
    device = next(model.parameters()).device
    model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    heaps = {kind: [_TopK(top_k) for _ in range(num_classes)] for kind in KINDS}
    pairs: dict[tuple[int, int], _TopK] = {}
    correct = torch.zeros(2, dtype=torch.int64, device=device)
    loss_sum, seen = 0.0, 0
    for logits, targets in predict(model, loader, device, amp_dtype, progress=progress,
                                   desc="Grad-CAM val predictions"):
        logits = logits[:, :num_classes]  # (B, C): extra outputs of a wider head are never predicted
        probs = logits.softmax(dim=1)
        conf, pred = probs.max(dim=1)
        true_prob = probs.gather(1, targets[:, None]).squeeze(1)
        cm.update(pred, targets)
        correct += topk_correct(logits, targets, (1, 5))
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        # (B,) arrays to the host once per batch; the Python loop below touches B scalars, not B x C.
        for i, (t, p, c, tp) in enumerate(zip(targets.tolist(), pred.tolist(), conf.tolist(), true_prob.tolist())):
            pos = seen + i
            item = (pos, t, p, c, tp)
            if t == p:
                heaps["confident_correct"][t].push(c, pos, item)
                heaps["unsure_correct"][t].push(-c, pos, item)
            else:
                heaps["confident_wrong"][t].push(c, pos, item)
                pairs.setdefault((t, p), _TopK(pair_examples)).push(c, pos, item)
        seen += targets.shape[0]
    if seen == 0:
        raise ValueError("the val loader yielded no images")
    to_ex = lambda items: [Example(*it) for it in items]  # noqa: E731
    top1, top5 = (100.0 * v / seen for v in correct.tolist())
    return PredictionSummary(
        num_images=seen, top1=top1, top5=top5, loss=loss_sum / seen, confusion=cm.compute().cpu(),
        examples={k: {c: to_ex(h.items()) for c, h in enumerate(hs) if h.heap} for k, hs in heaps.items()},
        pair_examples={pair: to_ex(h.items()) for pair, h in pairs.items()})


# ----------------------------------------------------------------------------------------------------------------
# The whole analysis
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class GradCamReport:
    """Result of :func:`analyze`.

    Attributes:
        summary: the streaming pass (counts, confusion, all kept examples).
        per_class: :func:`utils.metrics.per_class_report` rows (+ 'wnid'), class-index order.
        pairs: :func:`utils.metrics.confused_pairs` rows of the top pairs, each with 'examples'.
        report_classes: the classes that got a section in the HTML (all, or the worst N).
        files: name -> path of everything written.
    """

    summary: PredictionSummary
    per_class: list[dict]
    pairs: list[dict]
    report_classes: list[int]
    files: dict[str, Path]

    @property
    def report_path(self) -> Path:
        return self.files["report"]


def analyze(model: nn.Module, data: ImageNetDataManager, out_dir: Union[str, Path], method: str = "gradcam",
            top_k: int = 3, num_pairs: int = 10, pair_examples: int = 3, report_classes: int = 50,
            batch_size: int = 64, display_size: Optional[int] = None, amp_dtype: Optional[torch.dtype] = None,
            target_layer: str = "layer4", title: str = "Grad-CAM analysis", class_names: Optional[Sequence[str]]
            = None, progress: bool = True) -> GradCamReport:
    """Stream the val set, pick examples, compute their Grad-CAMs and write the report.

    Args:
        model: the classifier, on its device.
        data: its data (``data.val_loader`` is streamed in order).
        out_dir: receives report.html, overlays/, analysis.json, per_class_accuracy.csv and plots.
        method: 'gradcam' or 'gradcam++'.
        top_k: examples per class and kind; num_pairs: confused pairs shown; pair_examples: images per pair.
        report_classes: classes that get a section in the HTML: all when C <= this, else the worst this many
            by top-1 (a 1,000-section page with 9,000 images is unreadable; the accuracy table lists them all).
        batch_size: images per forward pass (streaming and CAM).
        display_size: side (px) of the shown images (default max(val_image_size, 128)); the crop matches the
            evaluation crop, so the heatmap lines up with what the model saw.
        class_names: names in class order (default ``data.class_names``; a checkpoint's mapping may be passed);
            plots and the report show their short form (:func:`core.prepare.short_class_names`).
        progress: bars over the val pass and the Grad-CAM maps (``--logging.progress_bar``).

    Returns:
        A :class:`GradCamReport`.
    """
    out_dir = Path(out_dir)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    full_names = list(class_names) if class_names is not None else list(data.class_names)
    names = short_class_names(full_names, data.classes)  # what every plot and the report show
    C = data.num_classes
    start = time.perf_counter()
    summary = collect_predictions(model, data.val_loader(batch_size), C, top_k, pair_examples, amp_dtype, progress)
    log.info("streamed %d val images in %.1f s: top-1 %.2f%%, top-5 %.2f%%", summary.num_images,
             time.perf_counter() - start, summary.top1, summary.top5)

    per_class = per_class_report(summary.confusion, names)
    for row, wnid in zip(per_class, data.classes):
        row["wnid"] = wnid
    pairs = confused_pairs(summary.confusion, names, num_pairs)
    for p in pairs:
        p["examples"] = summary.pair_examples.get((p["true"], p["pred"]), [])
    if C <= report_classes:
        chosen = list(range(C))
    else:
        acc = np.array([r["accuracy"] if not math.isnan(r["accuracy"]) else np.inf for r in per_class])
        chosen = sorted(np.argsort(acc, kind="stable")[:report_classes].tolist())

    # Grad-CAM only for the examples shown: the predicted class for every image, the true class too for errors.
    shown: list[Example] = [ex for kind in KINDS for c in chosen for ex in summary.examples[kind].get(c, [])]
    shown += [ex for p in pairs for ex in p["examples"]]
    ds = data.val_dataset()
    disp = display_size or max(data.cfg.val_image_size, 128)
    view = build_eval_crop(data.cfg, disp)
    jobs = sorted({(ex.position, c) for ex in shown for c in {ex.pred, ex.true}})
    paths: dict[tuple[int, int], str] = {}
    thumbs: dict[int, np.ndarray] = {}
    with GradCamAnalyzer(model, method, target_layer) as cam, \
            progress_bar(total=len(jobs), desc="Grad-CAM maps", enabled=progress, unit="map") as bar:
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b:b + batch_size]
            images = torch.stack([ds[pos][0] for pos, _ in chunk])
            maps, _ = cam.cams(images, [c for _, c in chunk])
            for (pos, c), m in zip(chunk, maps):
                if pos not in thumbs:
                    thumbs[pos] = view(image=ds.reader.read(int(ds.sample_ids[pos])))["image"]
                rel = f"overlays/val{pos:06d}_class{c:04d}.png"
                cv2.imwrite(str(out_dir / rel), cv2.cvtColor(overlay_cam(thumbs[pos], m), cv2.COLOR_RGB2BGR))
                paths[(pos, c)] = rel
            bar.update(len(chunk))
    for ex in shown:
        ex.source = ds.reader.describe(int(ds.sample_ids[ex.position]))
        ex.overlays = {c: paths[(ex.position, c)] for c in (ex.pred, ex.true)}
    log.info("Grad-CAM (%s) of %d (image, class) pairs done at %.1f s", method, len(jobs), time.perf_counter() - start)

    files = _write_outputs(out_dir, summary, per_class, pairs, chosen, names, data, thumbs, method, title,
                           target_layer, full_names)
    log.info("wrote %s (%.1f s in all)", files["report"], time.perf_counter() - start)
    return GradCamReport(summary=summary, per_class=per_class, pairs=pairs, report_classes=chosen, files=files)


# ----------------------------------------------------------------------------------------------------------------
# Output files and the HTML report
# ----------------------------------------------------------------------------------------------------------------

def _data_uri_png_file(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _data_uri_jpeg(rgb: np.ndarray, quality: int = 88) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "JPEG encoding of a uint8 RGB array cannot fail"
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _write_outputs(out_dir: Path, s: PredictionSummary, per_class: list[dict], pairs: list[dict],
                   chosen: list[int], names: list[str], data: ImageNetDataManager, thumbs: dict[int, np.ndarray],
                   method: str, title: str, target_layer: str, full_names: list[str]) -> dict[str, Path]:
    from utils.visualization import plot_confusion_matrix, plot_most_confused, plot_per_class_accuracy, \
        MAX_HEATMAP_CLASSES

    files: dict[str, Path] = {"overlays": out_dir / "overlays"}
    files["per_class_csv"] = write_per_class_csv(per_class, out_dir / "per_class_accuracy.csv")
    files["most_confused_png"] = plot_most_confused(s.confusion, names, out_dir / "most_confused.png",
                                                    top_n=max(len(pairs), 1) if pairs else 10)
    files["per_class_png"] = plot_per_class_accuracy(per_class, out_dir / "per_class_accuracy.png")
    if data.num_classes <= MAX_HEATMAP_CLASSES:
        files["confusion_png"] = plot_confusion_matrix(s.confusion, names, out_dir / "confusion_matrix.png")
    np.save(out_dir / "confusion_matrix.npy", s.confusion.numpy())
    as_json = lambda exs: [dataclasses.asdict(e) for e in exs]  # noqa: E731
    analysis = {
        "method": method, "target_layer": target_layer, "num_images": s.num_images, "top1": s.top1, "top5": s.top5,
        "loss": s.loss, "classes": data.classes, "class_names": full_names, "short_names": names,
        "examples": {k: {str(c): as_json(v) for c, v in by_cls.items()} for k, by_cls in s.examples.items()},
        "confused_pairs": [{**{k: v for k, v in p.items() if k != "examples"}, "examples": as_json(p["examples"])}
                           for p in pairs],
        "report_classes": chosen,
    }
    files["json"] = out_dir / "analysis.json"
    files["json"].write_text(json.dumps(analysis, indent=1))
    files["report"] = out_dir / "report.html"
    files["report"].write_text(_render_html(s, per_class, pairs, chosen, names, data, thumbs, method, title,
                                            target_layer, out_dir, files), encoding="utf-8")
    return files


REPORT_TEMPLATE = Path(__file__).resolve().with_name("gradcam_report.html.j2")
"""The Jinja2 template of ``report.html`` (packaged next to this module)."""


def _render_html(s: PredictionSummary, per_class: list[dict], pairs: list[dict], chosen: list[int],
                 names: list[str], data: ImageNetDataManager, thumbs: dict[int, np.ndarray], method: str,
                 title: str, target_layer: str, out_dir: Path, files: dict[str, Path]) -> str:
    """The report page from :data:`REPORT_TEMPLATE`; every image is inlined as a data URI."""
    uri_cache: dict[str, str] = {}

    def overlay_uri(rel: str) -> str:
        if rel not in uri_cache:
            bgr = cv2.imread(str(out_dir / rel), cv2.IMREAD_COLOR)
            uri_cache[rel] = _data_uri_jpeg(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return uri_cache[rel]

    def accuracy(r: dict) -> Optional[float]:
        return None if math.isnan(r["accuracy"]) else r["accuracy"]

    chosen_set = set(chosen)
    accuracy_rows = [{**r, "accuracy": accuracy(r), "linked": r["class_index"] in chosen_set}
                     for r in sorted(per_class, key=lambda r: (accuracy(r) is None, accuracy(r) or 0.0))]
    sections = [{"index": c, "name": names[c], "wnid": data.classes[c], "accuracy": accuracy(per_class[c]),
                 "support": per_class[c]["support"],
                 "kinds": [(label, s.examples[kind].get(c, [])) for kind, label in KINDS.items()]} for c in chosen]
    plots = {"confusion": _data_uri_png_file(files["confusion_png"]) if "confusion_png" in files else None,
             "most_confused": _data_uri_png_file(files["most_confused_png"]),
             "per_class": _data_uri_png_file(files["per_class_png"])}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPORT_TEMPLATE.parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["basename"] = lambda source: Path(source).name
    return env.get_template(REPORT_TEMPLATE.name).render(
        title=title, method=method, target_layer=target_layer, summary=s, num_classes=len(names),
        data_root=str(data.root), generated=time.strftime("%Y-%m-%d %H:%M"), names=names, pairs=pairs,
        plots=plots, accuracy_rows=accuracy_rows, sections=sections, overlay_uri=overlay_uri,
        thumb_uri=lambda ex: _data_uri_jpeg(thumbs[ex.position]))


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------

def analyze_checkpoint(checkpoint: Union[str, Path], out_dir: Optional[Union[str, Path]] = None,
                       data_overrides: Optional[dict[str, Any]] = None, device: str = "auto",
                       **analyze_kwargs: Any) -> GradCamReport:
    """Load a checkpoint, build its val data and run :func:`analyze`.

    Args:
        checkpoint: a ``best.pt``/``last.pt`` of :class:`core.trainer.ImageNetTrainer`.
        out_dir: default ``<run>/gradcam`` when the checkpoint sits in ``<run>/models``, else beside it.
        data_overrides: DataConfig fields replacing the checkpoint's (e.g. {"root": Path(...),
            "num_workers": 0}); a missing or None ``root`` means the bundled sample. The evaluation size, crop
            ratio and mean/std come from the checkpoint's preprocessing spec unless overridden here.
        device: 'auto', 'cpu', 'cuda[:N]' or 'mps'.
        analyze_kwargs: passed on to :func:`analyze` (method, top_k, num_pairs, ...).

    Raises:
        CheckpointMismatchError: the data's class list differs from the checkpoint's.
    """
    loaded = load_model(checkpoint, device)
    cfg = loaded.config
    spec = loaded.preprocessing
    overrides = {"root": None, "val_image_size": spec.input_size, "val_crop_ratio": spec.crop_ratio,
                 "mean": spec.mean, "std": spec.std, **(data_overrides or {})}
    data_cfg = dataclasses.replace(cfg.data, **overrides)
    data = ImageNetDataManager(data_cfg, seed=cfg.training.seed, run_dir=None,
                               progress=analyze_kwargs.get("progress", True))
    try:
        check_compatible({"config": cfg.to_dict(), "classes": loaded.classes}, cfg.model.name, data.classes,
                         loaded.path)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"{err}. The val data is {data.root}: pass --data.root with the dataset the "
                                      f"checkpoint was trained on") from None
    path = Path(checkpoint)
    if out_dir is None:
        out_dir = (path.parent.parent if path.parent.name == "models" else path.parent) / "gradcam"
    amp = resolve_amp(cfg.training.amp, next(loaded.model.parameters()).device)
    analyze_kwargs.setdefault("title", f"Grad-CAM analysis of {path.name} ({cfg.model.name}, "
                                       f"{loaded.weights.replace('_', ' ')} weights)")
    return analyze(loaded.model, data, out_dir, amp_dtype=amp, class_names=loaded.class_names, **analyze_kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m services.gradcam_analyzer --gradcam.checkpoint PATH [--data.root DIR] [options]`` (the older
    spellings ``--checkpoint``, ``--top-k``, ... still work), through :func:`core.cli.run_entry`; exit 0 or 2."""
    p = argparse.ArgumentParser(prog="python -m services.gradcam_analyzer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gradcam.checkpoint", "--checkpoint", dest="checkpoint", type=Path, required=True,
                   help="checkpoint file (best.pt, last.pt, ...)")
    p.add_argument("--data.root", dest="root", type=Path, default=None,
                   help="dataset root with the val split (default: the bundled 10-class sample)")
    p.add_argument("--data.source", dest="source", choices=("imagefolder", "hf"), default=None,
                   help="data source (default: the checkpoint's)")
    p.add_argument("--data.val_split", dest="val_split", default=None, help="val split name (default: checkpoint's)")
    p.add_argument("--data.val_fraction", dest="val_fraction", type=float, default=None,
                   help="stratified fraction of the val split to analyse (default: the checkpoint's)")
    p.add_argument("--data.num_workers", dest="num_workers", type=int, default=None,
                   help="data-loader workers (default: the checkpoint's)")
    p.add_argument("--data.index_cache_dir", dest="index_cache_dir", type=Path, default=None,
                   help="where file indexes are cached (default: the checkpoint's, else ~/.cache/resnet-imagenet)")
    p.add_argument("--gradcam.out", "--out", dest="out", type=Path, default=None,
                   help="output folder (default: <run>/gradcam)")
    p.add_argument("--gradcam.method", "--method", dest="method", choices=METHODS, default="gradcam",
                   help="CAM method (default gradcam)")
    p.add_argument("--gradcam.target_layer", "--target-layer", dest="target_layer", default="layer4",
                   help="ResNet stage whose last block is explained")
    p.add_argument("--gradcam.top_k", "--top-k", dest="top_k", type=int, default=3,
                   help="examples per class and kind (default 3)")
    p.add_argument("--gradcam.pairs", "--pairs", dest="pairs", type=int, default=10,
                   help="most-confused pairs shown (default 10)")
    p.add_argument("--gradcam.pair_examples", "--pair-examples", dest="pair_examples", type=int, default=3,
                   help="examples per confused pair (default 3)")
    p.add_argument("--gradcam.report_classes", "--report-classes", dest="report_classes", type=int, default=50,
                   help="classes with a section in the report: all if fewer, else the worst N (default 50)")
    p.add_argument("--gradcam.batch_size", "--batch-size", dest="batch_size", type=int, default=64,
                   help="images per forward pass (default 64)")
    p.add_argument("--gradcam.display_size", "--display-size", dest="display_size", type=int, default=None,
                   help="shown image side in px (default >= 128)")
    p.add_argument("--training.device", "--device", dest="device", default="auto", help="auto, cpu, cuda[:N] or mps")
    p.add_argument("--logging.progress_bar", dest="progress_bar", choices=("true", "false"), default="true",
                   help="progress bars with an ETA (default true)")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {"root": a.root}
    for key in ("source", "val_split", "val_fraction", "num_workers", "index_cache_dir"):
        if getattr(a, key) is not None:
            overrides[key] = getattr(a, key)

    def body() -> int:
        report = analyze_checkpoint(a.checkpoint, a.out, overrides, a.device, method=a.method, top_k=a.top_k,
                                    num_pairs=a.pairs, pair_examples=a.pair_examples,
                                    report_classes=a.report_classes, batch_size=a.batch_size,
                                    display_size=a.display_size, target_layer=a.target_layer,
                                    progress=a.progress_bar == "true")
        s = report.summary
        print(f"{s.num_images} images: top-1 {s.top1:.2f}%, top-5 {s.top5:.2f}%; report: {report.report_path}")
        return EXIT_OK

    return run_entry(body)  # bad input (CheckpointMismatchError is a ValueError): one line, exit 2


if __name__ == "__main__":
    sys.exit(main())
