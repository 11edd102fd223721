"""The demo's predict path on real photos and on every kind of bad upload; the Space folder running on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import load_checkpoint
from core.config import BUNDLED_SAMPLE_ROOT, ExperimentConfig
from core.data.decode import decode_image
from core.data.transforms import build_eval_transform
from core.model import build_model
from deployment.app import (API_ENDPOINTS, CAM_DISPLAY_PX, CAM_LEGEND_PX, MAX_PIXELS, InputImageError, Predictor,
                            build_demo, cam_legend, classify, example_paths, load_image, predict, predict_with_cam)
from deployment_helpers import checkpoint_of, exported_space

EXAMPLES = [Path(p) for p in example_paths()]


@pytest.fixture(scope="session")
def space(tmp_path_factory) -> Path:
    return exported_space(tmp_path_factory.getbasetemp() / "deployment")


@pytest.fixture(scope="session")
def predictor(space) -> Predictor:
    return Predictor(space / "model")


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Uploads the app must refuse, with a message."""
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("this is not an image\n")
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(EXAMPLES[0].read_bytes()[:600])
    Image.new("1", (8000, 6000)).save(d / "large.png")  # 48 MP in a few KB: over our limit, under Pillow's
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # 400 MP: Pillow's own bomb check fires
    return {p.stem: p for p in d.iterdir()}


def test_examples_are_small_real_photos():
    assert 5 <= len(EXAMPLES) <= 8
    for p in EXAMPLES:
        assert p.stat().st_size < 50_000 and min(Image.open(p).size) >= 100


def test_model_panel_and_device(predictor):
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    info = predictor.info_markdown()
    assert "ResNet-18" in info and "10 classes" in info and "top-1" in info and "tench" in info


def test_preprocess_matches_core_eval_transform(predictor, space):
    cfg = ExperimentConfig.from_dict(load_checkpoint(checkpoint_of(space))["config"]).data
    transform = build_eval_transform(cfg, cfg.val_image_size)
    photo = decode_image(EXAMPLES[0])
    wide = np.asarray(Image.fromarray(photo).resize((301, 187)))
    for rgb in (photo, wide, photo[:1, :1]):
        expected = transform(image=rgb)["image"][None]  # (1, 3, 64, 64)
        torch.testing.assert_close(predictor.preprocess(rgb), expected, rtol=0, atol=1e-5)


def test_predict_on_real_photos_agrees_with_the_checkpoint(predictor, space):
    ckpt = load_checkpoint(checkpoint_of(space))
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    reference = build_model("resnet18", 10).eval()
    reference.load_state_dict(ckpt["model"])
    transform = build_eval_transform(cfg.data, cfg.data.val_image_size)
    names = [c["short_name"] for c in json.loads((space / "model" / "classes.json").read_text())]
    probs = predictor.probabilities(load_image(EXAMPLES[0]).rgb)
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0)
    photos = EXAMPLES + [sorted(c.iterdir())[0] for c in sorted((BUNDLED_SAMPLE_ROOT / "val").iterdir())[::3]]
    for path in photos:
        rgb = load_image(path).rgb
        top = predictor.predict(rgb)
        values = list(top.values())
        assert len(top) == 5 and set(top) <= set(names) and sum(values) <= 1 + 1e-9
        assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
        with torch.no_grad():
            ref = torch.softmax(reference(transform(image=decode_image(path))["image"][None]), 1)[0]
        expected = {names[i]: float(ref[i]) for i in ref.argsort(descending=True)[:5]}
        assert list(top) == list(expected), path.name
        assert values == pytest.approx(list(expected.values()), abs=1e-5)


def test_grad_cam_overlay_of_the_top_class(predictor):
    rgb = load_image(EXAMPLES[0]).rgb  # 112 px: the 98-px centre square, shown at 224 px
    overlay = predictor.grad_cam(rgb)
    d = CAM_DISPLAY_PX[0]
    assert overlay.shape == (d + CAM_LEGEND_PX, d, 3) and overlay.dtype == np.uint8
    assert np.array_equal(overlay[d:], cam_legend(d))  # the colour key sits under the overlay
    other = predictor.grad_cam(rgb, class_index=int(predictor.probabilities(rgb).argmin()))
    assert not np.array_equal(overlay[:d], other[:d])  # the map depends on the class explained
    top, cam, status = classify(predictor, str(EXAMPLES[0]), True)
    assert cam is not None and cam.shape == overlay.shape and next(iter(top)) in status
    # the test model takes 64 px inputs: layer4 is 2 x 2, and the page says the map is that coarse
    assert predictor.cam_grid == 2 and "only 2 x 2 cells" in status
    assert "cells" not in classify(predictor, str(EXAMPLES[0]), False)[2]  # no overlay, no note


def test_cam_legend_runs_from_blue_to_red_with_its_labels():
    legend = cam_legend(224)
    assert legend.shape == (CAM_LEGEND_PX, 224, 3) and legend.dtype == np.uint8
    row = legend[CAM_LEGEND_PX // 2].astype(int)  # through the colour bar
    bar = row[(row != 255).any(axis=1) & (np.ptp(row, axis=1) > 60)]  # coloured pixels, not the grey text
    assert bar[0, 2] > 100 and bar[0, 0] < 50  # low end blue (JET)
    assert bar[-1, 0] > 100 and bar[-1, 2] < 50  # high end red
    assert (legend[:, :20] < 128).any() and (legend[:, -24:] < 128).any()  # 'low' and 'high' are written


def test_api_functions_return_the_page_results_and_refuse_bad_files(predictor, bad_files):
    import gradio as gr

    assert predict(predictor, str(EXAMPLES[0])) == classify(predictor, str(EXAMPLES[0]), False)[0]
    top, cam, status = predict_with_cam(predictor, str(EXAMPLES[0]))
    assert len(top) == 5 and cam.shape[0] == cam.shape[1] + CAM_LEGEND_PX and "Most likely" in status
    for fn in (predict, predict_with_cam):
        with pytest.raises(gr.Error, match="not an image"):
            fn(predictor, str(bad_files["notes"]))


def test_short_class_names_are_the_training_ones(predictor, space):
    from core.data.manager import ImageNetDataManager

    ckpt = load_checkpoint(checkpoint_of(space))
    data = ImageNetDataManager(ExperimentConfig.from_dict(ckpt["config"]).data, progress=False)
    assert predictor.labels == data.short_names  # the demo, the class-distribution plot and Grad-CAM agree
    assert predictor.labels[0] == "tench" and all("," not in n for n in predictor.labels)


@pytest.mark.parametrize("name, message", [
    ("notes", "not an image"),
    ("empty", "empty (0 bytes)"),
    ("truncated", "damaged or truncated"),
    ("large", f"limit is {MAX_PIXELS / 1e6:.0f} megapixels"),
    ("bomb", "decompression bomb"),
])
def test_bad_upload_gives_a_message_and_the_app_keeps_serving(predictor, bad_files, name, message):
    with pytest.raises(InputImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_image(bad_files[name])
    top, cam, status = classify(predictor, str(bad_files[name]), True)
    assert top is None and cam is None and message in status and status.startswith("⚠️")
    top, cam, status = classify(predictor, str(EXAMPLES[0]), False)  # the next upload works
    assert len(top) == 5 and cam is None


def _converted(mode: str, src: Path, dst: Path) -> Path:
    im = Image.open(src).convert("RGB")
    if mode == "I;16":  # 16-bit grayscale PNG, full 0..65535 range
        Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(dst / "g16.png")
        return dst / "g16.png"
    if mode == "1x1":
        Image.new("RGB", (1, 1), (30, 120, 200)).save(dst / "one.png")
        return dst / "one.png"
    out = dst / ("cmyk.jpg" if mode == "CMYK" else f"{mode}.png")
    im.convert(mode).save(out)
    return out


@pytest.mark.parametrize("mode, note", [
    ("L", "Grayscale image converted"),
    ("RGBA", "Transparency was flattened"),
    ("CMYK", "CMYK image converted"),
    ("I;16", "16-bit grayscale image converted"),
    ("P", None),
    ("1x1", "only 1 x 1 px"),
])
def test_unusual_images_are_converted_and_classified(predictor, tmp_path, mode, note):
    path = _converted(mode, EXAMPLES[0], tmp_path)
    img = load_image(path)
    assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    top, cam, status = classify(predictor, str(path), True)
    assert len(top) == 5 and cam is not None
    if note:
        assert note in status


def test_sixteen_bit_keeps_its_tones(tmp_path):
    gray8 = np.asarray(Image.open(EXAMPLES[0]).convert("L"))
    rgb = load_image(_converted("I;16", EXAMPLES[0], tmp_path)).rgb
    assert np.abs(rgb[:, :, 0].astype(int) - gray8).max() <= 1  # not clipped to white


def test_demo_builds_with_the_loaded_model_and_two_named_endpoints(predictor):
    demo = build_demo(predictor)
    config = demo.get_config_file()
    types = {c["type"] for c in config["components"]}
    assert {"image", "label", "checkbox", "markdown", "dataset"} <= types
    endpoints = demo.get_api_info()["named_endpoints"]
    assert sorted(endpoints) == sorted(f"/{name}" for name in API_ENDPOINTS)  # the page's own events are private
    assert [p["component"] for p in endpoints["/predict_with_cam"]["parameters"]] == ["Image"]
    assert [r["component"] for r in endpoints["/predict_with_cam"]["returns"]] == ["Label", "Image", "Markdown"]


def test_space_folder_runs_on_its_own_without_pickle(space):
    """The Space receives only its folder: no `core` package, and weights load without any unpickling."""
    script = (
        "import sys, pickle, torch\n"
        "sys.modules['core'] = None  # `import core` raises from here on\n"
        "def refuse(*a, **k): raise AssertionError('pickle used')\n"
        "torch.load = pickle.load = pickle.loads = refuse\n"
        "sys.path.insert(0, '.')\n"
        "import app\n"
        "p = app.Predictor()\n"
        "top = p.predict(app.load_image('examples/tench.jpg').rgb)\n"
        "print(len(top), p.device)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-c", script], cwd=space, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "5"
