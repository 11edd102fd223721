"""Review decisions: the append-only ``decisions.jsonl`` log, the last-decision-wins rule, the cleaning manifest
exported from it, and the summary (counts, detector precision).

One JSON object per line, exactly ``{"id", "path", "given", "decision", "label", "time"}``: ``id`` the full-split
sample id, ``path`` its relative path, ``given`` its WNID in the data, ``decision`` one of keep / relabel / remove
/ skip, ``label`` the WNID it ends up with (keep: the given one; relabel: the new one; remove and skip: null),
``time`` ISO-8601 with the UTC offset. Every line is written with one ``write`` and fsynced before the app moves
on, so a killed server loses at most the line being written; an undo is a new line for the same id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from core.atomic import atomic_write_text
from core.label_noise import REMOVAL_FILE, RELABEL_FILE, detection_metrics
from services.label_review.issues import IssueSet, ReviewInputError, ReviewItem

log = logging.getLogger(__name__)

DECISIONS = ("keep", "relabel", "remove", "skip")
FIELDS = ("id", "path", "given", "decision", "label", "time")
REVIEW_DIR = "review"
DECISIONS_FILE = "decisions.jsonl"
TORN_SUFFIX = ".torn"


@dataclass(frozen=True)
class Decision:
    """One line of ``decisions.jsonl`` (see the module docstring for the fields)."""

    id: int
    path: str
    given: str
    decision: str
    label: Optional[str]
    time: str

    def to_line(self) -> str:
        """The JSON line, fields in :data:`FIELDS` order, with its newline."""
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"


def make_decision(issues: IssueSet, item: ReviewItem, decision: str, label: Optional[int] = None,
                  now: Optional[dt.datetime] = None) -> Decision:
    """A decision on ``item``, normalised: relabelling to the given class is a keep.

    Args:
        decision: keep, relabel, remove or skip.
        label: the new class index (relabel only; None = the suggestion).
        now: the time stamp (default: now, local time with its UTC offset).

    Raises:
        ValueError: unknown decision or class index.
    """
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; choose one of: {', '.join(DECISIONS)}")
    wnids = issues.classes.wnids
    target: Optional[int] = None
    if decision == "relabel":
        target = item.suggested if label is None else int(label)
        if not 0 <= target < len(wnids):
            raise ValueError(f"class index {target} outside [0, {len(wnids)})")
        if target == item.given:
            decision = "keep"
    if decision == "keep":
        target = item.given
    stamp = (now or dt.datetime.now().astimezone()).isoformat(timespec="milliseconds")
    return Decision(id=item.id, path=item.path, given=wnids[item.given], decision=decision,
                    label=None if target is None else wnids[target], time=stamp)


def parse_decision(line: str, where: str, issues: IssueSet) -> Decision:
    """Parse and check one line against the review items.

    Raises:
        ReviewInputError: not a JSON object with exactly :data:`FIELDS`, an unknown decision, id or WNID, or an
            id whose path or given label differs from label_issues.csv. ``where`` ('FILE line N') starts the
            message.
    """
    fix = "fix or delete that line (the other decisions are kept as they are)"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ReviewInputError(f"{where} is not valid JSON ({e.msg}); {fix}") from None
    if not isinstance(obj, dict) or set(obj) != set(FIELDS):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ReviewInputError(f"{where} must be an object with fields {', '.join(FIELDS)}, got {keys}; {fix}")
    if obj["decision"] not in DECISIONS:
        raise ReviewInputError(f"{where}: unknown decision {obj['decision']!r} (one of {', '.join(DECISIONS)}); "
                               f"{fix}")
    sid = obj["id"]
    pos = issues.position(sid) if isinstance(sid, int) and not isinstance(sid, bool) else None
    if pos is None:
        raise ReviewInputError(f"{where}: sample id {sid!r} is not a flagged sample of {issues.directory}; the "
                               f"decisions belong to another label_issues run: {fix}")
    item = issues.items[pos]
    index = issues.classes.index
    for field, wnid in (("given", obj["given"]), ("label", obj["label"])):
        if wnid is not None and wnid not in index:
            raise ReviewInputError(f"{where}: unknown WNID {wnid!r} in {field!r} (id {sid}), not a class of "
                                   f"{issues.image_dir}; pass the --data.root the decisions were made on, or {fix}")
    given = issues.classes.wnids[item.given]
    if obj["path"] != item.path or obj["given"] != given:
        raise ReviewInputError(f"{where}: id {sid} is {item.path!r} labelled {given} in label_issues.csv, not "
                               f"{obj['path']!r} / {obj['given']}; {fix}")
    label = obj["label"]
    fits = {"keep": label in (None, given), "relabel": label is not None and label != given,
            "remove": label is None, "skip": label is None}[obj["decision"]]
    if not fits:
        raise ReviewInputError(f"{where}: label {label!r} does not fit decision {obj['decision']!r} (keep: the "
                               f"given WNID; relabel: another WNID; remove, skip: null); {fix}")
    return Decision(**obj)


def latest_decisions(decisions: Iterable[Decision]) -> dict[int, Decision]:
    """The last decision per sample id (file order): an undo is simply a later line."""
    out: dict[int, Decision] = {}
    for d in decisions:
        out[d.id] = d
    return out


class DecisionLog:
    """``decisions.jsonl`` of a review: read and checked on open, appended to with flush + fsync.

    A last line cut off by a crash mid-write (no newline, not valid JSON) is moved to ``decisions.jsonl.torn``
    and the file is truncated to its last complete line, with a warning; it was never acknowledged to the
    reviewer, so that image is simply shown again. Any other bad line stops the review with an error naming it,
    and the file is left untouched.

    Args:
        issues: the review items the decisions must refer to.
        path: default ``<issues dir>/review/decisions.jsonl``.
        repair: move a torn last line aside (the app); False leaves the file as it is and ignores the torn line
            (export, which must not write to the review folder).

    Raises:
        ReviewInputError: a bad line (see :func:`parse_decision`).
    """

    def __init__(self, issues: IssueSet, path: Optional[Path] = None, repair: bool = True):
        self.issues = issues
        self.path = Path(path) if path is not None else issues.directory / REVIEW_DIR / DECISIONS_FILE
        self._lock = threading.Lock()
        self.decisions: list[Decision] = self._read(repair)
        self.latest = latest_decisions(self.decisions)

    def _read(self, repair: bool) -> list[Decision]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        out = []
        for n, raw in enumerate(lines, start=1):
            if raw.strip():
                out.append(parse_decision(raw.decode("utf-8", "replace"), f"{self.path} line {n}", self.issues))
        if tail.strip():
            where = f"{self.path} line {len(lines) + 1}"
            try:
                out.append(parse_decision(tail.decode("utf-8", "replace"), where, self.issues))
                if repair:
                    self._append_bytes(b"\n")
            except ReviewInputError:
                self._torn(tail, len(data) - len(tail), where, len(out), repair)
        return out

    def _torn(self, tail: bytes, keep_bytes: int, where: str, kept: int, repair: bool) -> None:
        if not repair:
            log.warning("%s is cut off (a crash mid-write); ignored, %d complete decisions read", where, kept)
            return
        torn = self.path.with_name(self.path.name + TORN_SUFFIX)
        with open(torn, "ab") as f:
            f.write(tail + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with open(self.path, "r+b") as f:
            f.truncate(keep_bytes)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s was cut off by a crash mid-write: moved to %s; %d complete decisions kept, that image is "
                    "shown again", where, torn, kept)

    def _append_bytes(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, decisions: Sequence[Decision]) -> None:
        """Append ``decisions`` (one write, then fsync) and update :attr:`latest`; thread-safe."""
        if not decisions:
            return
        with self._lock:
            self._append_bytes("".join(d.to_line() for d in decisions).encode("utf-8"))
            self.decisions.extend(decisions)
            self.latest.update({d.id: d for d in decisions})


# ----------------------------------------------------------------------------------------------------------------
# Export and summary
# ----------------------------------------------------------------------------------------------------------------

def manifest_entries(latest: dict[int, Decision], issues: IssueSet) -> tuple[list[str], dict[str, str]]:
    """The cleaning manifest of the last decisions: (removal entries, {entry: new WNID}), entries being relative
    paths (sample ids for sources without paths), in queue order. Keep and skip add nothing."""
    removal, relabel = [], {}
    for item in issues.items:
        d = latest.get(item.id)
        if d is None:
            continue
        if d.decision == "remove":
            removal.append(item.key)
        elif d.decision == "relabel":
            relabel[item.key] = d.label
    return removal, relabel


def export_manifest(issues: IssueSet, log_: DecisionLog, out_dir: Path) -> tuple[Path, Path]:
    """Write ``removal_list.txt`` and ``relabel_map.json`` (the formats ``core.label_noise.read_manifest``
    reads: paths relative to the split folder, WNID targets) from the last decisions, atomically.

    Raises:
        ReviewInputError: ``out_dir`` is the issues folder (its manifest files are the detector's own).
    """
    out_dir = Path(out_dir)
    if out_dir.resolve() == issues.directory.resolve():
        raise ReviewInputError(f"--out {out_dir} is the issues folder, whose {REMOVAL_FILE} and {RELABEL_FILE} are "
                               f"the detector's automatic manifest; pass another folder")
    removal, relabel = manifest_entries(log_.latest, issues)
    s = summarize(issues, log_.latest)
    header = (f"# label review of {issues.directory}: {s['reviewed']} of {s['flagged']} flagged samples reviewed, "
              f"{s['remove']} removed, {s['relabel']} relabelled\n")
    removal_path = atomic_write_text(out_dir / REMOVAL_FILE, header + "".join(f"{e}\n" for e in removal))
    relabel_path = atomic_write_text(out_dir / RELABEL_FILE, json.dumps(relabel, indent=0) + "\n")
    return removal_path, relabel_path


def summarize(issues: IssueSet, latest: dict[int, Decision]) -> dict:
    """Counts and detector precision of a review.

    Returns:
        ``flagged``, ``keep``, ``relabel``, ``relabel_to_suggestion``, ``remove``, ``skip``, ``reviewed``
        (keep + relabel + remove), ``undecided`` (no decision yet), ``confirmed_wrong`` (relabel + remove) and
        ``detector_precision``: confirmed_wrong / reviewed, the share of reviewed flags the reviewer confirmed
        (None before any review). With ``noise_mask.npy`` also, against the injected flips:
        ``detector_precision_vs_truth`` (all flagged), ``detector_precision_vs_truth_reviewed`` (reviewed ones),
        ``reviewer_precision_vs_truth`` and ``reviewer_recall_vs_truth`` (of the reviewed ones: relabel/remove
        as the reviewer's "wrong"), via :func:`core.label_noise.detection_metrics`.
    """
    s = {k: 0 for k in ("keep", "relabel", "relabel_to_suggestion", "remove", "skip")}
    reviewed: list[tuple[ReviewItem, Decision]] = []
    for item in issues.items:
        d = latest.get(item.id)
        if d is None:
            continue
        s[d.decision] += 1
        if d.decision == "relabel" and d.label == issues.classes.wnids[item.suggested]:
            s["relabel_to_suggestion"] += 1
        if d.decision != "skip":
            reviewed.append((item, d))
    s["flagged"] = len(issues.items)
    s["reviewed"] = len(reviewed)
    s["undecided"] = s["flagged"] - s["reviewed"] - s["skip"]
    s["confirmed_wrong"] = s["relabel"] + s["remove"]
    s["detector_precision"] = s["confirmed_wrong"] / s["reviewed"] if reviewed else None
    if issues.has_noise_mask:
        s["detector_precision_vs_truth"] = (sum(it.noisy for it in issues.items) / len(issues.items)
                                            if issues.items else None)
        truth = [it.noisy for it, _ in reviewed]
        said_wrong = [d.decision != "keep" for _, d in reviewed]
        m = detection_metrics(said_wrong, truth) if reviewed else None
        s["detector_precision_vs_truth_reviewed"] = sum(truth) / len(truth) if reviewed else None
        s["reviewer_precision_vs_truth"] = m["precision"] if m and m["num_flagged"] else None
        s["reviewer_recall_vs_truth"] = m["recall"] if m and m["num_noisy"] else None
    return s


def summary_lines(s: dict) -> list[str]:
    """The summary as short human-readable lines (the app and the export command print the same)."""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    lines = [f"{s['reviewed']} of {s['flagged']} flagged samples reviewed ({s['skip']} skipped, {s['undecided']} "
             f"undecided): {s['keep']} kept, {s['relabel']} relabelled ({s['relabel_to_suggestion']} to the "
             f"suggestion), {s['remove']} removed",
             f"detector precision (share of reviewed flags confirmed wrong): {pct(s['detector_precision'])}"]
    if "detector_precision_vs_truth" in s:
        lines.append(f"against the injected noise: detector precision {pct(s['detector_precision_vs_truth'])} on all "
                     f"flagged, {pct(s['detector_precision_vs_truth_reviewed'])} on the reviewed ones; reviewer "
                     f"precision {pct(s['reviewer_precision_vs_truth'])}, recall {pct(s['reviewer_recall_vs_truth'])}")
    return lines
