"""Gradio demo: the top-5 classes of an uploaded photo with confidence bars, and a Grad-CAM overlay of the top class.

Runs on its own from this folder (a Hugging Face Space receives only this folder): it needs ``model/`` (written by
``python -m deployment.export``) and rebuilds the network with torchvision (:func:`build_network`).

    python app.py [--model-dir model] [--host 127.0.0.1] [--port 7860]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import cv2
import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file
from torch import nn
from torchvision.models import get_model

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = HERE / "model"
EXAMPLES_DIR = HERE / "examples"

MAX_UPLOAD_BYTES = 10 * 2 ** 20
"""Largest accepted upload (10 MiB); the server answers 413 above it (Gradio's ``max_file_size``)."""
MAX_PIXELS = 40_000_000
"""Largest accepted image (40 megapixels, 120 MB as RGB): bigger ones, decompression bombs included (a few-KB
PNG can declare 100,000 x 100,000 px), are refused from the header, before any pixel is decoded."""
SMALL_SIDE_PX = 32
"""Images with a side below this are classified, with a warning: upscaled that much they carry little detail."""
CAM_DISPLAY_PX = (224, 448)
"""Side of the Grad-CAM overlay: the centre crop at its own resolution, clamped to this range (px)."""
CAM_LEGEND_PX = 28
"""Height of the colour legend drawn under the Grad-CAM overlay (px)."""
FINE_CAM_GRID = 7
"""Grad-CAM maps are layer4's grid: 7 x 7 for a ResNet at 224 px. Below this many cells a side (2 x 2 at 64 px),
the page says the map is coarse."""


class InputImageError(ValueError):
    """An upload that cannot be classified; the message is meant for the user."""


# --------------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------------

def build_network(architecture: str, num_classes: int, small_input: bool, blurpool: bool = False) -> nn.Module:
    """The exported network, untrained: ``torchvision.models.<architecture>``, the training code's model.

    ``small_input`` swaps the stem as ``core.model`` does (a 3x3 stride-1 conv, no max-pool), so the exported
    state_dict loads with ``strict=True``; ``blurpool`` low-passes the input of the strided convs as
    ``core.model.apply_blurpool`` does (the Space ships without ``core``, so the few lines are repeated here and a
    test holds the two to the same logits). Maps (N, 3, H, W) normalised images -> (N, num_classes) logits.
    """
    model = get_model(architecture, weights=None, num_classes=num_classes)
    if small_input:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if blurpool:  # Zhang 2019: a 3x3 binomial filter, channel by channel, before each strided conv of >= 16 channels
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :]) / 16
        for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d) and max(m.stride) > 1
                     and m.in_channels >= 16]:
            conv.register_buffer("blur_kernel", kernel.expand(conv.in_channels, 1, 3, 3).clone(), persistent=False)
            conv.register_forward_pre_hook(lambda c, args: (nn.functional.conv2d(
                args[0], c.blur_kernel.to(args[0].dtype), padding=1, groups=c.in_channels),))
    return model


# --------------------------------------------------------------------------------------------------------------
# Reading uploads
# --------------------------------------------------------------------------------------------------------------

@dataclass
class LoadedImage:
    """A decoded upload: (H, W, 3) uint8 RGB pixels, and notes on what was converted, for the user."""

    rgb: np.ndarray
    notes: list[str] = field(default_factory=list)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_rgb(im: Image.Image, notes: list[str]) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3) uint8 RGB, noting what changed."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        # Pillow's convert("L") clips 16-bit values at 255 (an almost white picture); rescale the range instead.
        a = np.asarray(im).astype(np.float64)
        top = 1.0 if mode == "F" and a.max(initial=0) <= 1.0 else (255.0 if a.max(initial=0) <= 255 else 65535.0)
        gray = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{'32-bit float' if mode == 'F' else '16-bit'} grayscale image converted to 8-bit RGB.")
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        # Transparent pixels often hold black or garbage colour; show them on white, as a browser would.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("Transparency was flattened onto a white background.")
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("L", "1"):
        notes.append("Grayscale image converted to RGB (the model was trained on colour photos).")
    elif mode == "CMYK":
        notes.append("CMYK image converted to RGB.")
    elif mode != "P":
        notes.append(f"{mode} image converted to RGB.")
    return np.asarray(im.convert("RGB"))


def load_image(source: Union[str, Path, bytes], max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode an uploaded file (path or bytes) to RGB, with EXIF rotation applied.

    Grayscale, palette, RGBA, CMYK, 16-bit and float images are converted (and a note says so); animated images
    give their first frame.

    Raises:
        InputImageError: empty file, not an image, damaged, or larger than ``max_pixels`` (checked from the header,
            so a decompression bomb is refused without decoding it). The message is written for the user.
    """
    data = source if isinstance(source, (bytes, bytearray)) else None
    if data is None:
        path = Path(source)
        if not path.is_file():
            raise InputImageError("The uploaded file could not be found on the server; please upload it again.")
        if path.stat().st_size == 0:
            raise InputImageError("The file is empty (0 bytes). Please upload a photo (JPEG, PNG, WebP...).")
        data = path.read_bytes()
    if len(data) == 0:
        raise InputImageError("The file is empty (0 bytes). Please upload a photo (JPEG, PNG, WebP...).")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                w, h = im.size
                if w * h > max_pixels:
                    raise InputImageError(
                        f"The image is {w:,} x {h:,} px ({w * h / 1e6:.0f} megapixels); the limit is "
                        f"{max_pixels / 1e6:.0f} megapixels. Please upload a smaller version.")
                if getattr(im, "n_frames", 1) > 1:
                    notes.append(f"Animated image: its first of {im.n_frames} frames was used.")
                im.load()  # decodes fully: a truncated file fails here
                im = ImageOps.exif_transpose(im) or im
                rgb = _to_rgb(im, notes)
    except InputImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputImageError(f"The image is far larger than the {max_pixels / 1e6:.0f}-megapixel limit (it may be "
                              "a decompression bomb) and was not decoded.") from e
    except UnidentifiedImageError as e:
        raise InputImageError("This file is not an image that can be read (JPEG, PNG, WebP, BMP, GIF, TIFF...).") \
            from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt data inside a known format
        raise InputImageError(f"The image file is damaged or truncated and could not be decoded ({e}).") from e
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise InputImageError(f"The image decoded to an unexpected shape {rgb.shape}.")
    return LoadedImage(np.ascontiguousarray(rgb), notes)


# --------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------

def cam_legend(width: int, height: int = CAM_LEGEND_PX) -> np.ndarray:
    """The colour key of the Grad-CAM overlay: OpenCV's JET colour map (the one ``show_cam_on_image`` uses) from
    'low' (blue, no evidence for the class) to 'high' (red, most evidence), on white.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    legend = np.full((height, width, 3), 255, np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (low_w, text_h), _ = cv2.getTextSize("low", font, scale, thick)
    (high_w, _), _ = cv2.getTextSize("high", font, scale, thick)
    left, right = 6 + low_w + 6, width - 6 - high_w - 6
    ramp = np.linspace(0, 255, max(1, right - left)).astype(np.uint8)[None, :]
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)  # (1, n, 3)
    top, bottom = height // 2 - 5, height // 2 + 5
    legend[top:bottom, left:right] = bar
    base = (height + text_h) // 2
    cv2.putText(legend, "low", (6, base), font, scale, (40, 40, 40), thick, cv2.LINE_AA)
    cv2.putText(legend, "high", (width - 6 - high_w, base), font, scale, (40, 40, 40), thick, cv2.LINE_AA)
    return legend


class Predictor:
    """The exported classifier, loaded once: preprocessing, top-k prediction and Grad-CAM.

    Args:
        model_dir: folder written by ``deployment/export.py`` (model.safetensors, config.json, classes.json).
        device: torch device; None = CUDA when available, else CPU.

    Raises:
        FileNotFoundError: a file of the export is missing (the message says how to make it).
        ValueError: config.json and classes.json disagree.
    """

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR, device: Optional[Union[str, torch.device]] = None):
        model_dir = Path(model_dir)
        for name in ("model.safetensors", "config.json", "classes.json"):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(
                    f"{model_dir / name} not found; export a checkpoint first: python -m deployment.export "
                    f"--checkpoint <run>/models/best.pt --out {model_dir}")
        self.model_dir = model_dir
        self.config: dict[str, Any] = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.classes: list[dict[str, Any]] = json.loads((model_dir / "classes.json").read_text(encoding="utf-8"))
        if len(self.classes) != self.config["num_classes"]:
            raise ValueError(f"{model_dir}: classes.json names {len(self.classes)} classes, config.json says "
                             f"{self.config['num_classes']}")
        # the short names of the export (core.prepare.short_class_names), as in the training plots and reports;
        # a classes.json written before they were exported has only the full names
        self.labels = [c.get("short_name") or c["name"] for c in self.classes]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = build_network(self.config["architecture"], self.config["num_classes"],
                                   self.config["small_input"], self.config.get("blurpool", False))
        # safetensors only: no pickle is ever loaded, so a tampered weights file cannot run code
        self.model.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=True)
        self.model.eval().to(self.device)
        pre = self.config["preprocessing"]
        self.input_size: int = pre["input_size"]
        self.resize_size: int = pre["resize_size"]
        self._mean = np.asarray(pre["mean"], np.float32) * 255.0
        self._std = np.asarray(pre["std"], np.float32) * 255.0
        self._cam_lock = threading.Lock()  # Grad-CAM hooks the shared model; one request at a time
        self.cam_grid = self._layer4_side()

    @torch.no_grad()
    def _layer4_side(self) -> int:
        """Side of layer4's feature map at ``input_size`` (measured once): the resolution of every Grad-CAM map."""
        shape: list[int] = []
        hook = self.model.layer4.register_forward_hook(lambda _m, _i, out: shape.extend(out.shape))
        try:
            self.model(torch.zeros(1, 3, self.input_size, self.input_size, device=self.device))
        finally:
            hook.remove()
        return int(shape[-1])

    def cam_note(self) -> Optional[str]:
        """A sentence for the page when the Grad-CAM grid is coarse (fewer than FINE_CAM_GRID cells a side), else
        None."""
        g = self.cam_grid
        if g >= FINE_CAM_GRID:
            return None
        return (f"The model takes {self.input_size} px inputs, so its Grad-CAM map has only {g} x {g} cells: it "
                f"shows which part of the photo mattered, not an outline (a ResNet at 224 px gives 7 x 7).")

    # -- preprocessing -----------------------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, S, S) float32 normalised, S = input_size.

        The evaluation transform of core.data.transforms.build_eval_transform: resize the short side to
        resize_size (bilinear, OpenCV), centre crop, normalise; test_app.py checks that both agree.
        """
        h, w = rgb.shape[:2]
        scale = self.resize_size / min(h, w)
        # round(), as albumentations' SmallestMaxSize; the short side becomes resize_size >= input_size
        rh, rw = max(round(h * scale), self.input_size), max(round(w * scale), self.input_size)
        resized = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)
        top, left = (rh - self.input_size) // 2, (rw - self.input_size) // 2
        crop = resized[top:top + self.input_size, left:left + self.input_size]
        x = (crop.astype(np.float32) - self._mean) / self._std  # (S, S, 3)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)

    # -- prediction --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (num_classes,) softmax probabilities (float64, sum 1)."""
        logits = self.model(self.preprocess(rgb)).float()  # (1, num_classes)
        return torch.softmax(logits, dim=1)[0].double().cpu().numpy()

    def predict(self, rgb: np.ndarray, k: int = 5) -> dict[str, float]:
        """The ``min(k, num_classes)`` most likely classes: {display name: probability}, most likely first."""
        probs = self.probabilities(rgb)
        top = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
        return {self.labels[i]: float(probs[i]) for i in top}

    def grad_cam(self, rgb: np.ndarray, class_index: Optional[int] = None) -> np.ndarray:
        """Grad-CAM (Selvaraju et al. 2017, via pytorch-grad-cam) of ``class_index`` (default: the top class) on
        the last block of layer4, overlaid on the centre crop of the photo.

        Returns:
            (D + CAM_LEGEND_PX, D, 3) uint8 RGB: the (D, D) overlay, D = the crop's side in the photo clamped to
            CAM_DISPLAY_PX, above its colour legend (:func:`cam_legend`).
        """
        x = self.preprocess(rgb)
        if class_index is None:
            class_index = int(self.probabilities(rgb).argmax())
        with self._cam_lock:
            cam = GradCAM(model=self.model, target_layers=[self.model.layer4[-1]])
            try:  # not `with cam:` -- its __exit__ prints and swallows IndexError
                heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])[0]  # (S, S) in [0, 1]
            finally:
                cam.activations_and_grads.release()
        # the same centre square, cut from the photo at its own resolution
        h, w = rgb.shape[:2]
        scale = self.resize_size / min(h, w)
        side = max(1, int(round(self.input_size / scale)))
        top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
        base = rgb[top:top + side, left:left + side]
        d = int(np.clip(side, *CAM_DISPLAY_PX))
        base = cv2.resize(base, (d, d), interpolation=cv2.INTER_AREA if side > d else cv2.INTER_LINEAR)
        heat = cv2.resize(np.nan_to_num(heat).astype(np.float32), (d, d), interpolation=cv2.INTER_LINEAR)
        overlay = show_cam_on_image(base.astype(np.float32) / 255.0, np.clip(heat, 0, 1), use_rgb=True,
                                    colormap=cv2.COLORMAP_JET, image_weight=0.55)
        return np.vstack([overlay, cam_legend(d)])

    # -- description -------------------------------------------------------------------------------------------
    def info_markdown(self) -> str:
        """The model panel: architecture, accuracy (and on what data), classes, input and device."""
        c, met, pre = self.config, self.config.get("metrics", {}), self.config["preprocessing"]
        arch = c["architecture"].replace("resnet", "ResNet-")

        def pct(x: Optional[float]) -> str:
            return "n/a" if x is None else f"{x:.1f} %"

        subset = f"a stratified {100 * met['val_fraction']:g} % of " if met.get("val_fraction", 1.0) < 1 else ""
        n_val = f" ({met['val_images']} images)" if met.get("val_images") else ""
        return "\n".join([
            f"**{arch}** · {c['num_classes']} classes · {pre['input_size']} px input · "
            f"{'EMA weights' if c.get('weights') == 'ema' else 'trained weights'} · running on "
            f"{'GPU' if self.device.type == 'cuda' else 'CPU'}",
            "",
            f"Validation accuracy: **top-1 {pct(met.get('top1'))}**, top-5 {pct(met.get('top5'))} "
            f"on {subset}the val split{n_val} of {met.get('dataset', 'an unrecorded dataset')}.",
            "",
            "Classes: " + ", ".join(self.labels[:40]) + (f" and {len(self.labels) - 40} more" if len(self.labels) > 40
                                                         else "") + ".",
        ])


# --------------------------------------------------------------------------------------------------------------
# The Gradio app
# --------------------------------------------------------------------------------------------------------------

def classify(predictor: Predictor, upload: Optional[str], show_cam: bool
             ) -> tuple[Optional[dict[str, float]], Optional[np.ndarray], str]:
    """The app's handler: upload path -> (top-5 {name: probability} or None, Grad-CAM overlay or None, status).

    Never raises for a bad upload: the status says what was wrong and the app keeps serving.
    """
    if not upload:
        return None, None, "Upload a photo, or pick one of the examples."
    try:
        img = load_image(upload)
    except InputImageError as e:
        return None, None, f"⚠️ {e}"
    h, w = img.rgb.shape[:2]
    notes = list(img.notes)
    if min(h, w) < SMALL_SIDE_PX:
        notes.append(f"The image is only {w} x {h} px; it was upscaled to {predictor.input_size} px, so the "
                     "prediction is unreliable.")
    top = predictor.predict(img.rgb, k=5)
    cam = predictor.grad_cam(img.rgb) if show_cam else None
    best, p = next(iter(top.items()))
    status = f"Most likely: **{best}** ({100 * p:.1f} %)."
    if show_cam:
        status += f" The overlay shows where the model looked for *{best}* (red: most evidence)."
        if predictor.cam_note():
            notes.append(predictor.cam_note())
    return top, cam, "\n\n".join([status] + [f"ℹ️ {n}" for n in notes])


def predict(predictor: Predictor, upload: Optional[str]) -> dict[str, float]:
    """The ``/predict`` API endpoint: an image file -> its top-5 {class: probability}, most likely first.

    Raises:
        gradio.Error: no file or an unreadable one; the message says what was wrong.
    """
    top, _, status = classify(predictor, upload, show_cam=False)
    if top is None:
        raise gr.Error(status.removeprefix("⚠️ "))
    return top


def predict_with_cam(predictor: Predictor, upload: Optional[str]) -> tuple[dict[str, float], np.ndarray, str]:
    """The ``/predict_with_cam`` API endpoint: an image file -> (top-5 {class: probability}, the Grad-CAM overlay
    of the top class with its colour legend, the status text with its notes).

    Raises:
        gradio.Error: no file or an unreadable one; the message says what was wrong.
    """
    top, cam, status = classify(predictor, upload, show_cam=True)
    if top is None or cam is None:
        raise gr.Error(status.removeprefix("⚠️ "))
    return top, cam, status


def unopened_upload(payload: Any) -> Optional[str]:
    """Replaces the photo component's ``preprocess``: the upload reaches the handler as an unopened file path.

    The stock ``gr.Image`` opens every upload with PIL before the handler runs, so a file that is not an image,
    an empty one or a decompression bomb would fail there with a bare error; ``load_image`` checks them instead
    and the page says what was wrong. (A subclass would do the same, but Gradio writes a .pyi stub beside any file
    that defines a component class.)
    """
    return None if payload is None or payload.path is None else str(payload.path)


CSS = """
#title { text-align: center; margin-bottom: 0; }
#subtitle { text-align: center; color: var(--body-text-color-subdued); margin-top: 0; }
#status { min-height: 2.5em; }
"""


def example_paths(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The example photos shipped in the Space folder, sorted by name."""
    return sorted(str(p) for p in Path(folder).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


API_ENDPOINTS = ("predict", "predict_with_cam")
"""The named API endpoints (``/predict``, ``/predict_with_cam``), listed under the page's "Use via API" link."""


def build_demo(predictor: Predictor, examples: Optional[Sequence[str]] = None) -> gr.Blocks:
    """The page: upload and examples on the left; top-5 bars, Grad-CAM toggle and overlay on the right; the model
    panel below. Both the upload and the toggle re-run ``classify`` with the one loaded ``predictor``; an upload
    that cannot be read is removed from the photo box (no broken-image icon) and the message stays.

    The page's own events are private; the API has two named endpoints, :func:`predict` and
    :func:`predict_with_cam` (:data:`API_ENDPOINTS`), each taking one image file.
    """
    examples = example_paths() if examples is None else list(examples)
    arch = predictor.config["architecture"].replace("resnet", "ResNet-")
    with gr.Blocks(title=f"{arch} image classifier", analytics_enabled=False) as demo:
        gr.Markdown(f"# {arch} image classifier", elem_id="title")
        gr.Markdown(f"Upload a photo to see the five most likely of the model's {predictor.config['num_classes']} "
                    "classes, and where it looked (Grad-CAM).", elem_id="subtitle")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = gr.Image(label="Photo", type="filepath", sources=["upload", "clipboard"], height=360,
                                 elem_id="photo")
                image.preprocess = unopened_upload  # the handler decodes and checks uploads itself
                show_cam = gr.Checkbox(label="Show Grad-CAM overlay for the top class", value=False,
                                       elem_id="show-cam")
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[image], label="Examples (click one)",
                                examples_per_page=12)
            with gr.Column(scale=1):
                status = gr.Markdown("Upload a photo, or pick one of the examples.", elem_id="status")
                labels = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="top5")
                overlay = gr.Image(label="Grad-CAM overlay (top class)", type="numpy", interactive=False,
                                   visible=False, height=360, elem_id="gradcam", format="png")
        with gr.Accordion("About the model", open=True):
            gr.Markdown(predictor.info_markdown(), elem_id="model-info")

        def handler(upload: Optional[str], cam: bool):
            if not upload:  # cleared: by the user (image.clear resets the message) or after an unreadable upload
                return None, gr.Image(value=None, visible=False), gr.skip()
            top, overlay_rgb, message = classify(predictor, upload, cam)
            if top is None:  # unreadable: the .failure() step below shows why and empties the photo box
                raise gr.Error(message, visible=False, print_exception=False)
            # the overlay panel is shown only while the toggle is on and there is an overlay
            return top, gr.Image(value=overlay_rgb, visible=overlay_rgb is not None), message

        def refuse(upload: Optional[str]):
            # The photo box would show a broken-image icon: its value becomes None (a plain value: an update
            # object would rebuild the component without unopened_upload), which runs `handler` again with no
            # upload, and that keeps this message.
            return None, gr.Image(value=None, visible=False), classify(predictor, upload, False)[2], None

        for trigger in (image.change, show_cam.change):
            trigger(handler, inputs=[image, show_cam], outputs=[labels, overlay, status], concurrency_id="model",
                    show_progress="minimal", api_visibility="private").failure(
                refuse, inputs=[image], outputs=[labels, overlay, status, image], api_visibility="private")
        image.clear(lambda: "Upload a photo, or pick one of the examples.", outputs=[status],
                    api_visibility="private")

        # the API: endpoints with no trigger on the page, one image file in (the photo box's type and checks),
        # documented under the page's "Use via API" link
        gr.on([], lambda upload: predict(predictor, upload), inputs=[image], outputs=[labels],
              api_name=API_ENDPOINTS[0], api_description="An image file -> its top-5 {class: probability}.",
              concurrency_id="model")
        gr.on([], lambda upload: predict_with_cam(predictor, upload), inputs=[image], outputs=[labels, overlay, status],
              api_name=API_ENDPOINTS[1], concurrency_id="model",
              api_description="An image file -> (top-5 {class: probability}, Grad-CAM overlay of the top class with "
                              "its colour legend, status text).")
    return demo


def launch(demo: gr.Blocks, host: Optional[str] = None, port: Optional[int] = None, **kwargs: Any):
    """Start the server with the upload limit; host/port None = Gradio's defaults (or GRADIO_SERVER_* env)."""
    demo.queue(default_concurrency_limit=1)
    return demo.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_BYTES, show_error=True,
                       css=CSS, theme=gr.themes.Soft(), allowed_paths=[str(EXAMPLES_DIR)],
                       footer_links=["api"], **kwargs)  # the footer keeps only "Use via API"


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python app.py [--model-dir DIR] [--host H] [--port P]``."""
    p = argparse.ArgumentParser(description="Gradio demo of an exported ResNet classifier.")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="export folder (default: %(default)s)")
    p.add_argument("--host", default=None, help="bind address (default: Gradio's, 127.0.0.1 or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or GRADIO_SERVER_PORT)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    predictor = Predictor(args.model_dir)
    log.info("loaded %s (%d classes) on %s", predictor.config["architecture"], predictor.config["num_classes"],
             predictor.device)
    launch(build_demo(predictor), args.host, args.port)


if __name__ == "__main__":
    main()
