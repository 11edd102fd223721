"""The label review without a browser: the queue, decisions (last wins, fsync, torn lines), export through
core.label_noise, the summary, and bad inputs that must fail with one clear line and lose no decision."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.label_noise import apply_manifest_to, load_manifest
from label_review_helpers import fresh_issues, issues_template, sample_data
from services.label_review import (DecisionLog, ReviewInputError, ReviewSession, export_manifest, latest_decisions,
                                   load_issues, make_decision, manifest_entries, summarize)
from services.label_review.__main__ import main
from services.label_review.cams import CamRenderer, CamUnavailable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def issues_dir(tmp_path_factory, tmp_path) -> Path:
    return fresh_issues(issues_template(tmp_path_factory.getbasetemp()), tmp_path / "issues")


def _session(issues_dir: Path, **kwargs) -> ReviewSession:
    issues = load_issues(issues_dir, **kwargs)
    return ReviewSession(issues, DecisionLog(issues), CamRenderer(issues))


def _error_line(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


def test_queue_is_worst_label_quality_first_with_rows_matched_to_samples(issues_dir):
    issues = load_issues(issues_dir)
    probs, ids, noise = (np.load(issues_dir / f) for f in ("pred_probs.npy", "train_ids.npy", "noise_mask.npy"))
    rows = [r for r in open(issues_dir / "label_issues.csv")][1:]
    assert len(issues.items) == len(rows) > 20
    scores = [it.score for it in issues.items]
    assert scores == sorted(scores)
    for it in issues.items:
        assert ids[it.row] == it.id and it.score == pytest.approx(probs[it.row, it.given])
        assert it.suggested == probs[it.row].argmax() and it.noisy == noise[it.row]
        assert (issues.image_dir / it.path).is_file()
    assert issues.classes.label(0) == "tench (n01440764)"
    # without train_ids.npy the row order is rebuilt from folds.npy and each fold's scored_ids.npy
    os.remove(issues_dir / "train_ids.npy")
    assert load_issues(issues_dir).items == issues.items


def test_last_decision_wins_and_export_is_what_core_label_noise_applies(issues_dir, tmp_path):
    s = _session(issues_dir)
    items, cl = s.issues.items, s.issues.classes
    other = next(c for c in range(len(cl)) if c not in (items[3].given, items[3].suggested))
    s.decide(0, "keep")
    s.decide(0, "relabel")  # undo: the later decision replaces the keep
    s.decide(1, "remove")
    s.decide(1, "keep")  # undo a removal
    s.decide(2, "remove")
    s.decide(3, "relabel", other)
    s.decide(4, "skip")
    assert s.decide(5, "relabel", items[5].given).decision == "keep"  # relabelling to the given class is a keep
    latest = latest_decisions(DecisionLog(s.issues).decisions)  # as re-read from the file
    assert {i: d.decision for i, d in latest.items()} == {
        items[0].id: "relabel", items[1].id: "keep", items[2].id: "remove", items[3].id: "relabel",
        items[4].id: "skip", items[5].id: "keep"}
    removal, relabel = manifest_entries(latest, s.issues)
    assert removal == [items[2].path]
    assert relabel == {items[0].path: cl.wnids[items[0].suggested], items[3].path: cl.wnids[other]}

    export_manifest(s.issues, s.log, tmp_path / "manifest")
    data = sample_data(tmp_path / "cache")
    manifest = load_manifest(tmp_path / "manifest", data)
    assert manifest.remove.tolist() == [items[2].id]
    assert dict(zip(manifest.relabel_ids.tolist(), manifest.relabel_to.tolist())) == {
        items[0].id: items[0].suggested, items[3].id: other}
    report = apply_manifest_to(data, manifest)
    assert report.num_after == 599 and report.num_relabelled == 2
    with pytest.raises(ReviewInputError, match="detector's automatic manifest"):
        export_manifest(s.issues, s.log, issues_dir)


def test_every_decision_is_fsynced_and_one_json_object_per_line(issues_dir, monkeypatch):
    s = _session(issues_dir)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    s.decide(0, "remove")
    s.decide(1, "relabel")
    assert len(synced) == 2
    lines = s.log.path.read_text().splitlines()
    objs = [json.loads(x) for x in lines]
    assert [list(o) for o in objs] == [["id", "path", "given", "decision", "label", "time"]] * 2
    it = s.issues.items[1]
    assert objs[1] == {**objs[1], "id": it.id, "path": it.path, "given": s.issues.classes.wnids[it.given],
                       "decision": "relabel", "label": s.issues.classes.wnids[it.suggested]}
    assert objs[0]["label"] is None


def test_queue_filters_resume_point_skips_and_bulk_accept(issues_dir):
    s = _session(issues_dir)
    items, wn = s.issues.items, s.issues.classes.wnids
    every = s.queue()
    assert every == list(range(len(items))) and s.first_open(every) == 0
    c = wn[items[0].given]
    by_class = s.queue(c)
    assert by_class and all(c in (wn[items[p].given], wn[items[p].suggested]) for p in by_class)
    pair = f"{wn[items[0].given]}>{wn[items[0].suggested]}"
    assert all(f"{wn[items[p].given]}>{wn[items[p].suggested]}" == pair for p in s.queue(None, pair))
    s.decide(0, "keep")
    s.decide(1, "skip")
    s.decide(3, "remove")
    assert s.first_open(every) == 2 and s.next_open(every, 2) == 4  # decided items are passed over
    for p in every[4:]:
        s.decide(p, "keep")
    assert s.next_open(every, len(items) - 1) == 2  # wraps round to the undecided one
    s.decide(2, "keep")
    assert s.first_open(every) == 1 and s.next_open(every, 1) is None  # only the skipped one is left
    assert s.step(every, 0, -1) == 0 and s.step(every, 0, +1) == 1



def test_bulk_accept_relabels_undecided_items_above_the_threshold_only(issues_dir):
    s = _session(issues_dir)
    conf = np.array([it.confidence for it in s.issues.items])
    top = int(np.argmax(conf))
    s.decide(top, "remove")
    cands = s.bulk_candidates(s.queue(), 0.9)
    assert cands == [p for p in range(len(conf)) if conf[p] >= 0.9 and p != top] and cands
    assert s.bulk_accept(cands) == len(cands) and len(s.log.decisions) == 1 + len(cands)
    wn = s.issues.classes.wnids
    assert all(s.decision(p).label == wn[s.issues.items[p].suggested] for p in cands)
    assert s.decision(top).decision == "remove"  # a reviewer's decision is never overridden
    assert s.bulk_candidates(s.queue(), 0.9) == []


def test_summary_counts_and_precision_against_the_injected_noise(issues_dir):
    s = _session(issues_dir)
    items = s.issues.items
    noisy = [p for p, it in enumerate(items) if it.noisy]
    clean = [p for p, it in enumerate(items) if not it.noisy]
    assert len(noisy) >= 4
    s.decide(noisy[0], "relabel")
    s.decide(noisy[1], "remove")
    s.decide(noisy[2], "keep")  # the reviewer missed one
    s.decide(noisy[3], "skip")
    for p in clean[:2]:
        s.decide(p, "remove")  # and wrongly removed clean ones (if the detector flagged any)
    sm = summarize(s.issues, s.log.latest)
    wrong_said = 2 + len(clean[:2])
    reviewed = 3 + len(clean[:2])
    assert (sm["reviewed"], sm["skip"], sm["undecided"]) == (reviewed, 1, len(items) - reviewed - 1)
    assert sm["confirmed_wrong"] == wrong_said and sm["relabel_to_suggestion"] == 1
    assert sm["detector_precision"] == pytest.approx(wrong_said / reviewed)
    assert sm["detector_precision_vs_truth"] == pytest.approx(len(noisy) / len(items))
    assert sm["detector_precision_vs_truth_reviewed"] == pytest.approx(3 / reviewed)
    assert sm["reviewer_precision_vs_truth"] == pytest.approx(2 / wrong_said)
    assert sm["reviewer_recall_vs_truth"] == pytest.approx(2 / 3)
    os.remove(issues_dir / "noise_mask.npy")
    assert "reviewer_precision_vs_truth" not in summarize(load_issues(issues_dir), s.log.latest)


def test_grad_cam_of_given_and_suggested_class_from_the_fold_model(issues_dir, tmp_path):
    s = _session(issues_dir)
    it = s.issues.items[0]
    rgb, note = s.image(it)
    assert note is None and rgb.shape == (112, 112, 3)
    assert s.cams.checkpoint_for(it) == issues_dir / f"fold_{int(s.issues.fold_of[it.row])}" / "models" / "last.pt"
    given, suggested = s.cams.render(it, rgb)
    assert given.shape == suggested.shape == (224, 224, 3) and given.dtype == np.uint8
    assert not np.array_equal(given, suggested)  # two classes, two heatmaps
    for k in (0, 1):
        shutil.rmtree(issues_dir / f"fold_{k}" / "models")
    bare = CamRenderer(s.issues)
    assert not bare.available
    with pytest.raises(CamUnavailable, match="--checkpoint"):
        bare.render(it, rgb)


def test_missing_image_shows_a_placeholder_and_can_be_skipped(issues_dir, tmp_path, sample_copy):
    s = _session(issues_dir, data_root=sample_copy)
    it = s.issues.items[0]
    (sample_copy / "train" / it.path).unlink()
    rgb, note = s.image(it)
    assert rgb.shape == (224, 224, 3) and "Image not found" in note and it.path in note and "skip (S)" in note
    from services.label_review.app import _render

    out = _render(s, s.queue(), 0)
    assert out[8].startswith("⚠️ Image not found") and out[7] == "No Grad-CAM without the image."
    s.decide(0, "skip")
    assert s.first_open(s.queue()) == 1


def _edit(text: str, line: int, change) -> str:
    lines = text.splitlines()
    lines[line] = change(lines[line])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.replace("sample_id,", "id,", 1), "missing column(s) sample_id"),
    (lambda t: _edit(t, 2, lambda row: row + ",extra"), "line 3 does not have the header's 8 fields"),
    (lambda t: _edit(t, 1, lambda row: "x" + row), "line 2: sample_id 'x"),
])
def test_malformed_label_issues_csv_is_one_line_error_and_keeps_decisions(issues_dir, capsys, damage, message):
    s = _session(issues_dir)
    s.decide(0, "remove")
    before = s.log.path.read_bytes()
    csv = issues_dir / "label_issues.csv"
    csv.write_text(damage(csv.read_text()))
    assert main(["--issues", str(issues_dir)]) == 2
    line = _error_line(capsys)
    assert message in line and "label_issues.csv" in line and "python -m services.label_issues" in line
    assert s.log.path.read_bytes() == before


def test_torn_last_line_is_set_aside_and_the_review_continues(issues_dir, caplog, capsys, tmp_path):
    s = _session(issues_dir)
    for p in range(3):
        s.decide(p, "keep")
    good = s.log.path.read_bytes()
    torn = b'{"id": 12, "path": "n01440764/n014'
    s.log.path.write_bytes(good + torn)
    assert main(["export", str(issues_dir), "--out", str(tmp_path / "m")]) == 0  # export reads, never repairs
    assert s.log.path.read_bytes() == good + torn
    with caplog.at_level(logging.WARNING):
        reopened = _session(issues_dir)
    assert len(reopened.log.decisions) == 3 and reopened.first_open(reopened.queue()) == 3
    assert "cut off by a crash" in caplog.text and "3 complete decisions kept" in caplog.text
    assert s.log.path.read_bytes() == good  # truncated to the last complete line ...
    assert (s.log.path.parent / "decisions.jsonl.torn").read_bytes() == torn + b"\n"  # ... the rest kept aside
    reopened.decide(3, "remove")
    assert [json.loads(x)["decision"] for x in s.log.path.read_text().splitlines()] == ["keep"] * 3 + ["remove"]


def test_unknown_wnid_in_a_decision_is_one_line_error_and_changes_nothing(issues_dir, capsys, tmp_path):
    s = _session(issues_dir)
    s.decide(0, "keep")
    bad = json.loads(make_decision(s.issues, s.issues.items[1], "relabel").to_line()) | {"label": "n99999999"}
    s.log.path.write_text(s.log.path.read_text() + json.dumps(bad) + "\n")
    before = s.log.path.read_bytes()
    for argv in (["--issues", str(issues_dir)], ["export", str(issues_dir), "--out", str(tmp_path / "m")]):
        assert main(argv) == 2
        line = _error_line(capsys)
        assert "line 2: unknown WNID 'n99999999'" in line and "fix or delete that line" in line
        assert s.log.path.read_bytes() == before
    assert not (tmp_path / "m").exists()


def test_issues_folder_from_another_dataset_is_refused(issues_dir, tmp_path, capsys):
    other = tmp_path / "other_data"
    for w in ("n01443537", "n01484850", "n01491361"):
        (other / "train" / w).mkdir(parents=True)
    assert main(["--issues", str(issues_dir), "--data.root", str(other)]) == 2
    line = _error_line(capsys)
    assert "was made on another dataset" in line and "pass --data.root with the dataset the detection ran" in line
    with pytest.raises(ReviewInputError, match=r"pred_probs.npy has shape \(600, 10\), the data has 11 classes"):
        same = tmp_path / "eleven"
        shutil.copytree(Path(__file__).parents[1] / "data" / "imagenette_sample" / "train", same / "train",
                        ignore=lambda d, names: [n for n in names if n.endswith(".JPEG")])
        (same / "train" / "n99999999").mkdir()
        load_issues(issues_dir, same)
    assert main(["--issues", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in _error_line(capsys)
