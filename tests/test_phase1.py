"""End to end: the phase-1 script with no settings trains on the bundled sample and writes a complete run."""

from __future__ import annotations

import json

from conftest import PHASE1_SCRIPT, run_script


def test_phase1_default_run_on_bundled_sample(tmp_path):
    out = tmp_path / "phase1"
    proc = run_script(PHASE1_SCRIPT, ["--logging.output_dir", str(out), "--logging.progress_bar", "false"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "BUNDLED SAMPLE" in proc.stderr
    logs, models = out / "logs", out / "models"
    metrics = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 15
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.2  # the loss falls
    best = json.loads((logs / "summary.json").read_text())["best_top1"]
    assert best > 25.0, best  # 10 classes: chance is 10 %
    for name in ("train.log", "config.yaml", "curves.png", "class_distribution.csv", "class_distribution.png",
                 "run_info.json"):
        assert (logs / name).stat().st_size > 0, name
    assert {p.name for p in models.iterdir()} >= {"last.pt", "best.pt", "epoch_005.pt", "epoch_010.pt",
                                                   "epoch_015.pt"}
    assert json.loads((logs / "run_info.json").read_text())["bundled_sample"] is True
