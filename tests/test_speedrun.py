"""The speedrun's report (time-to-accuracy table and plot) and its evaluation ablation, on a real tiny run."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from conftest import tiny_config
from core.cli import experiment_config
from core.config import PROJECT_ROOT
from core.schedules import resolution_at
from core.trainer import ImageNetTrainer
from experiments.imagenette_speedrun import eval_ablation, report


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speedrun")
    cfg = tiny_config(tmp, training={"epochs": 2, "eval_every_epochs": 1})
    ImageNetTrainer(cfg).fit()
    return tmp / "run"


def test_report_writes_one_row_per_run_and_the_curve(tiny_run, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"images_per_s": 40.7, "model": "resnet18", "size": 128, "val_top1": 61.55,
                               "epochs": 3, "wall_time_s": 739.55, "seed": 0}))
    out = tmp_path / "speedrun"
    assert report.main(["--runs", str(tiny_run), "--ref", str(ref), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["kind"] for r in rows] == ["recipe", "reference"]
    metrics = [json.loads(x) for x in (tiny_run / "logs" / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tiny_run / "logs" / "summary.json").read_text())
    assert float(rows[0]["top1"]) == pytest.approx(metrics[-1]["val_top1"], abs=0.01)
    assert float(rows[0]["wall_min"]) == pytest.approx(summary["wall_time_s"] / 60, abs=0.01)
    assert rows[0]["epochs"] == "2" and rows[1]["wall_min"] == "12.33"
    with Image.open(out.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.size[0] >= 600
    assert report.main(["--out", str(out)]) == 2  # nothing to report


def test_eval_ablation_evaluates_the_checkpoint_at_each_size_with_and_without_flip(tiny_run, tmp_path, capsys):
    out = tmp_path / "ablation.json"
    assert eval_ablation.main([str(tiny_run), "--sizes", "32", "48", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["val_image_size"], r["eval_hflip"]) for r in rows] == [(32, False), (32, True), (48, False),
                                                                      (48, True)]
    last = [json.loads(x) for x in (tiny_run / "logs" / "metrics.jsonl").read_text().splitlines()][-1]
    assert rows[0]["val_top1"] == pytest.approx(last["val_top1"], abs=0.01)  # same weights, same evaluation
    assert all(0 <= r["val_top1"] <= 100 and r["eval_time_s"] >= 0 for r in rows)


SPEEDRUN = PROJECT_ROOT / "experiments" / "imagenette_speedrun"


@pytest.mark.parametrize("layers, epochs, schedule", [
    ([], 15, [64] * 8 + [80, 96, 112] + [128] * 4),
    (["short.yaml"], 4, [64] * 4),
    (["long.yaml"], 30, [64] * 19 + [80, 96, 112] + [128] * 8),
    (["long.yaml", "long40.yaml"], 40, [64] * 26 + [80, 96, 112] + [128] * 11),
    (["long.yaml", "long160.yaml"], 32, [64] * 19 + [80, 96, 112, 128, 144] + [160] * 8),
    (["long.yaml", "long160.yaml", "long160_wd.yaml"], 32, [64] * 19 + [80, 96, 112, 128, 144] + [160] * 8),
])
def test_each_recipe_resolves_to_the_schedule_its_results_report(layers, epochs, schedule):
    """The configs layered as RESULTS.md's commands layer them give the epochs, per-epoch crop sizes and test size
    of its table, with BlurPool on (the recipe of the measured rows since session 4)."""
    argv = ["--data.root", str(SPEEDRUN)]
    for name in layers:
        argv += ["--config", str(SPEEDRUN / name)]
    cfg = experiment_config(SPEEDRUN, argv)
    assert cfg.training.epochs == epochs
    assert [resolution_at(e, cfg.data) for e in range(cfg.training.epochs)] == schedule
    assert cfg.data.val_image_size == schedule[-1]  # tested at the last training size
    assert cfg.model.blurpool and cfg.model.name == "resnet18"
    assert cfg.training.weight_decay == (5e-4 if "long160_wd.yaml" in layers else 5e-5)
