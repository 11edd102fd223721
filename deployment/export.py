"""Export a training checkpoint into the self-contained Space folder: safetensors weights, config, classes, model card.

``python -m deployment.export --checkpoint <run>/models/best.pt --out deployment/model`` writes

- ``model.safetensors``: the EMA weights when the checkpoint holds them (``model_ema``), else the model's;
- ``config.json``: architecture, class count, input size, resize/crop, mean/std, the recorded top-1/top-5 and the
  dataset they were measured on, how the model was trained;
- ``classes.json``: index -> WNID, human-readable name and the short name the demo shows;
- ``model_card.md``: how the model was trained and its measured accuracy, also written into the Space README
  between the ``<!-- model-card:start -->`` / ``<!-- model-card:end -->`` markers.

The Space's ``app.py`` rebuilds the network with torchvision from ``config.json``, so it runs without ``core``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from core.atomic import atomic_write_text
from core.checkpoint import load_checkpoint
from core.config import PROJECT_ROOT, ExperimentConfig
from core.model import build_model, count_parameters
from core.preprocessing import preprocessing_of_checkpoint
from core.prepare import short_class_names

log = logging.getLogger(__name__)

DEPLOYMENT_DIR = Path(__file__).resolve().parent
"""The Space folder (this file's folder): app.py, requirements.txt, README.md, examples/, model/."""

IMAGENET_CLASSES_TSV = PROJECT_ROOT / "core" / "imagenet_classes.tsv"
"""ImageNet-1k (ILSVRC2012) WNID -> WordNet lemma names, 1,000 lines ``wnid<TAB>name`` sorted by WNID.
Source: the synset list and lemmas that timm ships (``timm/data/_info/imagenet_synset*.txt``), which are
WordNet 3.0 facts; the same names as Kaggle's ``LOC_synset_mapping.txt``."""

EXPORT_FORMAT_VERSION = 1
CARD_START, CARD_END = "<!-- model-card:start -->", "<!-- model-card:end -->"


class ExportError(ValueError):
    """The checkpoint cannot be exported as it is (for example it has no class mapping)."""


# --------------------------------------------------------------------------------------------------------------
# Data: the ImageNet-1k class names
# --------------------------------------------------------------------------------------------------------------

def load_imagenet_class_names(path: Path = IMAGENET_CLASSES_TSV) -> dict[str, str]:
    """WNID -> human-readable name (comma-separated WordNet lemmas, e.g. 'tench, Tinca tinca') for ImageNet-1k.

    Raises:
        FileNotFoundError: the table is missing.
        ValueError: a line is not ``wnid<TAB>name``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet class table not found: {path} (it ships with the repository)")
    names: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        wnid, sep, name = line.partition("\t")
        if not sep or not wnid.startswith("n") or not name.strip():
            raise ValueError(f"{path}:{n}: expected 'wnid<TAB>name', got {line!r}")
        names[wnid] = name.strip()
    return names


# --------------------------------------------------------------------------------------------------------------
# Reading what a run recorded
# --------------------------------------------------------------------------------------------------------------

def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError) as e:
        log.warning("could not read %s (%s)", path, e)
        return None


def _finite(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def recorded_metrics(checkpoint_path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """Val top-1/top-5 (%) of the checkpoint's weights, the epoch, and the data they were measured on.

    Reads ``<run>/logs/metrics.jsonl`` (the line of the checkpoint's epoch), ``summary.json`` and
    ``run_info.json`` beside ``<run>/models/`` when present; falls back to the checkpoint's ``best_top1``.
    """
    cfg = ckpt.get("config") or {}
    data = cfg.get("data") or {}
    state = ckpt.get("train_state") or {}
    epoch = ckpt.get("epoch", state.get("epoch"))
    run_dir = Path(checkpoint_path).resolve().parent.parent
    logs = run_dir / "logs"
    top1, top5 = None, None
    metrics_file = logs / "metrics.jsonl"
    if metrics_file.is_file():
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("epoch") == epoch and "val_top1" in rec:
                top1, top5 = _finite(rec.get("val_top1")), _finite(rec.get("val_top5"))
    if top1 is None:
        top1 = _finite(ckpt.get("best_top1"))
    info = _read_json(logs / "run_info.json") or {}
    root = data.get("root")
    if root is None:
        dataset = "the bundled Imagenette sample (data/imagenette_sample, 10 classes)"
    else:
        dataset = f"{Path(root).name} ({data.get('source', 'imagefolder')}, split '{data.get('val_split', 'val')}')"
    return {"top1": top1, "top5": top5, "epoch": epoch, "epochs": (cfg.get("training") or {}).get("epochs"),
            "dataset": dataset, "val_fraction": data.get("val_fraction", 1.0), "val_images": info.get("val_images"),
            "git_commit": info.get("git_commit"),
            "metrics_file": str(metrics_file) if metrics_file.is_file() else None}


# --------------------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------------------

def class_table(ckpt: dict[str, Any], source: str = "checkpoint") -> list[dict[str, Any]]:
    """[{"index", "wnid", "name", "short_name"}] in the model's output order, names from the ImageNet-1k table
    (else the checkpoint's ``class_names``, else the WNID itself); ``short_name`` is the one the demo, the plots
    and the reports show (:func:`core.prepare.short_class_names`).

    Raises:
        ExportError: no class mapping, or one that disagrees with the classifier width.
    """
    classes = ckpt.get("classes")
    class_to_idx = ckpt.get("class_to_idx")
    if not classes and class_to_idx:
        classes = [c for c, _ in sorted(class_to_idx.items(), key=lambda kv: kv[1])]
    if not classes:
        raise ExportError(
            f"{source} has no class mapping (neither 'classes' nor 'class_to_idx'), so its outputs cannot be named; "
            "export a checkpoint written by core.trainer.ImageNetTrainer, which stores the WNID of every output")
    classes = [str(c) for c in classes]
    if class_to_idx and any(class_to_idx.get(c) != i for i, c in enumerate(classes)):
        raise ExportError(f"{source}: 'classes' and 'class_to_idx' disagree on the output order")
    if len(set(classes)) != len(classes):
        raise ExportError(f"{source}: the class list has duplicate entries")
    fc_out = ckpt["model"]["fc.weight"].shape[0]
    if fc_out != len(classes):
        raise ExportError(f"{source}: the classifier has {fc_out} outputs but the class mapping names {len(classes)}")
    table = load_imagenet_class_names()
    saved_names = list(ckpt.get("class_names") or [])
    names = []
    for i, wnid in enumerate(classes):
        saved = saved_names[i] if i < len(saved_names) else None
        names.append(table.get(wnid) or (saved if saved and saved != wnid else None) or wnid)
    return [{"index": i, "wnid": wnid, "name": name, "short_name": short}
            for i, (wnid, name, short) in enumerate(zip(classes, names, short_class_names(names, classes)))]


def _state_dict_to_export(ckpt: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    ema = ckpt.get("model_ema")
    if ema:
        if set(ema) != set(ckpt["model"]):
            raise ExportError("the checkpoint's 'model_ema' has other keys than its 'model'")
        state, which = ema, "ema"
    else:
        state, which = ckpt["model"], "model"
    # safetensors stores contiguous, unshared CPU tensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}, which


def build_export_config(ckpt: dict[str, Any], checkpoint_path: Path, weights: str) -> dict[str, Any]:
    """The ``config.json`` that the app needs to rebuild and feed the model (plain JSON types)."""
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    d, m, t = cfg.data, cfg.model, cfg.training
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "architecture": m.name,
        "num_classes": int(ckpt["model"]["fc.weight"].shape[0]),
        "small_input": m.small_input,
        "blurpool": m.blurpool,
        "weights": weights,
        # input_size (px, the square centre crop), resize_size (px, the short side before it), crop_ratio,
        # interpolation, mean and std (of [0, 1] RGB pixels): the checkpoint's own spec
        "preprocessing": preprocessing_of_checkpoint(ckpt).to_dict(),
        "metrics": {k: v for k, v in recorded_metrics(checkpoint_path, ckpt).items() if k != "metrics_file"},
        "training": {
            "data_root": None if d.root is None else str(d.root), "fraction": d.fraction, "epochs": t.epochs,
            "image_size": d.image_size, "batch_size": t.batch_size, "grad_accum_steps": t.grad_accum_steps,
            "effective_batch_size": t.effective_batch_size, "optimizer": t.optimizer, "lr": t.lr,
            "weight_decay": t.weight_decay, "scheduler": t.scheduler, "warmup_epochs": t.warmup_epochs,
            "label_smoothing": t.label_smoothing, "amp": t.amp, "seed": t.seed,
        },
        "source": {"checkpoint": Path(checkpoint_path).name, "torch": str(ckpt.get("torch_version", torch.__version__)),
                   "exported": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def model_card(config: dict[str, Any], classes: list[dict[str, Any]]) -> str:
    """Markdown model card: architecture, measured accuracy (and on what), how it was trained, its classes."""
    met, tr, pre = config["metrics"], config["training"], config["preprocessing"]
    arch = config["architecture"]
    pretty = arch.replace("resnet", "ResNet-")
    params = count_parameters(build_model(arch, config["num_classes"], config["small_input"]))

    def pct(x: Optional[float]) -> str:
        return "not recorded" if x is None else f"{x:.2f} %"

    subset = f"a stratified {100 * met['val_fraction']:g} % of " if met.get("val_fraction", 1.0) < 1 else ""
    n_val = f" ({met['val_images']} images)" if met.get("val_images") else ""
    shown = ", ".join(c["short_name"] if c["wnid"] in c["short_name"] else f"{c['short_name']} ({c['wnid']})"
                      for c in classes[:20])
    more = f" and {len(classes) - 20} more (see model/classes.json)" if len(classes) > 20 else ""
    return "\n".join([
        "## Model card",
        "",
        f"- **Architecture**: {pretty} (He et al. 2016), {params:,} parameters, {config['num_classes']} classes"
        + (", small-input stem" if config["small_input"] else "")
        + (", BlurPool (Zhang 2019) before its strided convolutions" if config.get("blurpool") else "") + ".",
        f"- **Input**: RGB, short side resized to {pre['resize_size']} px, centre crop {pre['input_size']} px, "
        f"normalised with mean {pre['mean']} and std {pre['std']}.",
        f"- **Weights**: {'EMA of the weights' if config['weights'] == 'ema' else 'the trained weights'} "
        f"after epoch {met['epoch']} of {met['epochs']} (`{config['source']['checkpoint']}`).",
        f"- **Measured accuracy**: top-1 {pct(met['top1'])}, top-5 {pct(met['top5'])} on {subset}the val split"
        f"{n_val} of {met['dataset']}, single centre crop, as recorded by the trainer.",
        f"- **Training**: {tr['epochs']} epoch{'s' if tr['epochs'] != 1 else ''} on "
        + ("the bundled sample" if tr["data_root"] is None else f"`{tr['data_root']}`")
        + (f" (a stratified {100 * tr['fraction']:g} % subset)" if tr["fraction"] < 1 else "")
        + f", {tr['image_size']} px random-resized crops, {tr['optimizer']} with peak LR {tr['lr']:g}, "
        f"{tr['scheduler']} schedule, {tr['warmup_epochs']:g} warmup epochs, weight decay {tr['weight_decay']:g}, "
        f"effective batch {tr['effective_batch_size']}, label smoothing {tr['label_smoothing']:g}, AMP "
        f"{tr['amp']}, seed {tr['seed']}.",
        f"- **Classes**: {shown}{more}.",
        "- **Limits**: the model knows only these classes: any photo gets one of them, however unrelated. "
        "ImageNet images are for non-commercial research and education.",
        "",
        f"Exported {config['source']['exported']} from commit {met.get('git_commit') or 'unknown'} "
        f"with torch {config['source']['torch']}.",
    ]) + "\n"


def write_card_section(readme: Path, card: str) -> Path:
    """Replace the text between the model-card markers of ``readme`` with ``card``.

    Raises:
        FileNotFoundError: no such README.
        ValueError: the README lacks the markers.
    """
    readme = Path(readme)
    if not readme.is_file():
        raise FileNotFoundError(f"README not found: {readme}")
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(CARD_START), text.find(CARD_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no '{CARD_START}' ... '{CARD_END}' markers to hold the model card")
    new = text[: start + len(CARD_START)] + "\n" + card + text[end:]
    return atomic_write_text(readme, new)


@torch.no_grad()
def _check_round_trip(ckpt: dict[str, Any], weights_path: Path, config: dict[str, Any], which: str) -> float:
    """Max |logit difference| between the checkpoint's weights in core's model and the exported file."""
    blurpool = config.get("blurpool", False)
    reference = build_model(config["architecture"], config["num_classes"], config["small_input"],
                            blurpool=blurpool).eval()
    reference.load_state_dict(ckpt["model_ema"] if which == "ema" else ckpt["model"])
    exported = build_model(config["architecture"], config["num_classes"], config["small_input"],
                           blurpool=blurpool).eval()
    exported.load_state_dict(load_file(str(weights_path)))
    size = config["preprocessing"]["input_size"]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return float((reference(x) - exported(x)).abs().max())


def export_checkpoint(checkpoint: Path, out_dir: Path, readme: Optional[Path] = None) -> dict[str, Path]:
    """Export ``checkpoint`` into ``out_dir`` for the demo app (see the module docstring for the files).

    Args:
        checkpoint: a ``.pt`` written by ``core.trainer.ImageNetTrainer``.
        out_dir: receives model.safetensors, config.json, classes.json and model_card.md.
        readme: a README whose model-card section is replaced (None: left alone).

    Returns:
        {"weights", "config", "classes", "card"[, "readme"]} paths.

    Raises:
        FileNotFoundError: no checkpoint at that path.
        ExportError: no class mapping, or the exported weights do not reproduce the checkpoint's logits.
        ValueError: the file is not a checkpoint of this project.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ckpt = load_checkpoint(checkpoint)
    if not ckpt.get("config"):
        raise ExportError(f"checkpoint {checkpoint} has no 'config'; the architecture and preprocessing are unknown")
    classes = class_table(ckpt, source=f"checkpoint {checkpoint}")
    state, which = _state_dict_to_export(ckpt)
    config = build_export_config(ckpt, checkpoint, which)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"weights": out_dir / "model.safetensors", "config": out_dir / "config.json",
             "classes": out_dir / "classes.json", "card": out_dir / "model_card.md"}
    save_file(state, str(paths["weights"]), metadata={"format": "pt", "architecture": config["architecture"],
                                                       "weights": which})
    diff = _check_round_trip(ckpt, paths["weights"], config, which)
    if diff > 1e-5:
        raise ExportError(f"exported weights give logits {diff:.3g} away from the checkpoint's")
    atomic_write_text(paths["config"], json.dumps(config, indent=2) + "\n")
    atomic_write_text(paths["classes"], json.dumps(classes, indent=1, ensure_ascii=False) + "\n")
    card = model_card(config, classes)
    atomic_write_text(paths["card"], card)
    if readme is not None:
        paths["readme"] = write_card_section(readme, card)
    log.info("exported %s (%s weights, %d classes, top-1 %s) to %s", checkpoint, which, len(classes),
             config["metrics"]["top1"], out_dir)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python -m deployment.export --checkpoint PATH --out DIR [--readme PATH]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="a .pt written by the trainer (e.g. best.pt)")
    p.add_argument("--out", type=Path, default=DEPLOYMENT_DIR / "model", help="output folder (default: %(default)s)")
    p.add_argument("--readme", type=Path, default=None,
                   help="README whose model-card section is replaced (default: deployment/README.md when --out is "
                        "inside deployment/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    readme = args.readme
    if readme is None and DEPLOYMENT_DIR in args.out.resolve().parents:
        readme = DEPLOYMENT_DIR / "README.md"
    try:
        paths = export_checkpoint(args.checkpoint, args.out, readme)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"export failed: {e}") from e
    for name, path in paths.items():
        print(f"{name:8s} {path}")


if __name__ == "__main__":
    main()
