"""End to end: the phase-1 script with no settings trains on the bundled sample with the recipe of sample.yaml and
writes a complete run. (The full 60-epoch default run is measured, not asserted: phase1 RESULTS.md, section 1.)"""

from __future__ import annotations

import json

import yaml

from conftest import PHASE1_SCRIPT, run_script

SHORTENED = {("training", "epochs"): 4, ("training", "save_every_epochs"): 2}
"""The only settings the test changes, to keep the suite short."""


def test_phase1_default_run_on_bundled_sample(tmp_path):
    out = tmp_path / "phase1"
    flags = [a for (section, key), v in SHORTENED.items() for a in (f"--{section}.{key}", str(v))]
    proc = run_script(PHASE1_SCRIPT, ["--logging.output_dir", str(out), "--logging.progress_bar", "false", *flags])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "BUNDLED SAMPLE" in proc.stderr
    logs, models = out / "logs", out / "models"

    # The run used every setting of sample.yaml (the recipe), except the shortened ones.
    recipe = yaml.safe_load((PHASE1_SCRIPT.parent / "sample.yaml").read_text())
    resolved = yaml.safe_load((logs / "config.yaml").read_text())
    for section, values in recipe.items():
        for key, value in values.items():
            expected = SHORTENED.get((section, key), value)
            assert resolved[section][key] == expected, (section, key, resolved[section][key], expected)

    metrics = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 4 and all(m["val_top1"] is not None for m in metrics)
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.2  # the loss falls
    best = json.loads((logs / "summary.json").read_text())["best_top1"]
    assert best > 20.0, best  # 10 classes: chance is 10 %
    for name in ("train.log", "config.yaml", "curves.png", "class_distribution.csv", "class_distribution.png",
                 "run_info.json"):
        assert (logs / name).stat().st_size > 0, name
    assert {p.name for p in models.iterdir()} >= {"last.pt", "best.pt", "epoch_002.pt", "epoch_004.pt"}
    assert json.loads((logs / "run_info.json").read_text())["bundled_sample"] is True
