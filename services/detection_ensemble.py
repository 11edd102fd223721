"""An ensemble of label-issue detections: the out-of-sample probabilities of several finished K-fold detections of
the same samples and labels (other training seeds, fold recipes or rounds), averaged before cleanlab finds issues.

Each member's probability for a sample comes from a fold model that did not train on it, so their mean is still
out of sample. Averaging the predicted probabilities of several models is the ensemble cleanlab's documentation
recommends for label-quality scores (``cleanlab.rank.get_label_quality_ensemble_scores`` averages the members'
scores; averaging ``pred_probs`` as here keeps every ``filter_by`` rule usable). Members need not be independent:
a later round of a detection (``--cl.rounds``) trained on what that detection kept, and every detection of a study
shares its fold split. Issue 13 measured the mean of three detections on Imagenette at 20 % noise (two seeds and a
second round): its self-confidence ranks the flips at average precision 0.904 against 0.886 and 0.899 for the
first and second round alone (``experiments/label_noise_study/results/imagenette_b15_rounds/README.md``), and
cleanlab's ``prune_by_noise_rate`` flags at P 0.685 R 0.894 against 0.666 / 0.883 (``.../imagenette_b15_ensemble/``).

A member is a detection folder as :func:`services.label_issues.detect_label_issues` writes it: ``pred_probs.npy``
(M, C), ``train_ids.npy`` (M,) and ``given_labels.npy`` (M,). ``experiments/label_noise_study/export_probs.py``
writes these three files for a kept detection that holds only its ``fold_k/`` files. Refused as members: an AUM
detection (in-sample probabilities) and a detection that is itself an ensemble (its ``pred_probs.npy`` is a mean).

Sized for ILSVRC-2012, where one member's probabilities are 1,281,167 x 1,000 float32 (5.1 GB): members are
memory-mapped, checked and hashed in blocks of rows, and added into one running sum, so an ensemble holds two such
arrays in memory (this detection's and the sum) whatever its number of members.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

MEMBER_FILES = ("pred_probs.npy", "train_ids.npy", "given_labels.npy")
ENSEMBLE_FILE = "ensemble.json"
"""Written by a detection made with ``--cl.ensemble`` (:func:`write_ensemble_record`): its members and digests."""
BLOCK_BYTES = 1 << 26
"""Bytes of probabilities read at a time (64 MiB: 16,777 rows of ImageNet's 1,000 classes)."""
_checked: dict[tuple[str, str, str], str] = {}
"""(member's file digest, digest and dtype of the samples it joins) -> content hash of a member whose probabilities
passed :func:`open_member`'s checks in this process. A study checks its members before anything trains and its
detection again before the folds: a full pass over 5.1 GB a member on ILSVRC-2012, done once."""


@dataclass(frozen=True)
class Member:
    """A checked ensemble member (:func:`open_member`).

    Attributes:
        path: the detection folder.
        probs: (M', C) its ``pred_probs.npy``, memory-mapped, rows in its own order.
        pos: (M,) int64 row of ``probs`` for each sample of the detection it joins, or None when in the same order.
        digest: SHA-256 of its three files (:func:`member_digests`).
        content: SHA-256 of its float32 probabilities in the joined detection's order: equal for one detection saved
            twice in another row order or dtype.
    """

    path: Path
    probs: np.ndarray
    pos: np.ndarray | None
    digest: str
    content: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(M, C): samples of the detection it joins, classes."""
        return (self.probs.shape[0] if self.pos is None else self.pos.size, self.probs.shape[1])

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, block): float32 probabilities of the joined detection's samples ``rows``, in its order, read a
        block of :data:`BLOCK_BYTES` at a time."""
        m, c = self.shape
        step = max(1, BLOCK_BYTES // (4 * max(c, 1)))
        for start in range(0, m, step):
            rows = slice(start, min(m, start + step))
            if self.pos is None:
                yield rows, np.asarray(self.probs[rows], dtype=np.float32)
                continue
            idx = self.pos[rows]  # read the file's rows in ascending order, then put them in the detection's
            order = np.argsort(idx, kind="stable")
            block = np.empty((idx.size, c), dtype=np.float32)
            block[order] = self.probs[idx[order]]
            yield rows, block

    def read(self) -> np.ndarray:
        """(M, C) float32 all of its probabilities in the joined detection's order (tests and small sets)."""
        out = np.empty(self.shape, dtype=np.float32)
        for rows, block in self.blocks():
            out[rows] = block
        return out


def open_member(det_dir: str | Path, train_ids: np.ndarray, labels: np.ndarray) -> Member:
    """Detection ``det_dir`` as a member of the detection of the samples ``train_ids`` (M,) with the given
    ``labels`` (M,): its files checked (the probabilities a block at a time), aligned by sample id and hashed. The
    pass over the probabilities is made once per process for the same files and samples (:data:`_checked`).

    Raises:
        FileNotFoundError: a file of :data:`MEMBER_FILES` is missing from ``det_dir``.
        ValueError: the member is an AUM detection or an ensemble, its three files disagree in length, it scored
            other samples or checked other labels, or its rows are not probability vectors.
    """
    det_dir = Path(det_dir)
    where = f"--cl.ensemble {det_dir}"
    missing = [f for f in MEMBER_FILES if not (det_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{where}: no {', '.join(missing)}; give a finished detection/ folder, or write "
                                f"them for a kept one with experiments/label_noise_study/export_probs.py")
    if (det_dir / "aum.npy").is_file():
        raise ValueError(f"{where} is an AUM detection (in-sample probabilities); give K-fold detections")
    if (det_dir / ENSEMBLE_FILE).is_file():
        raise ValueError(f"{where} is itself an ensemble (its pred_probs.npy is a mean); list its members instead")
    probs = np.load(det_dir / MEMBER_FILES[0], mmap_mode="r")
    ids, given = (np.load(det_dir / f) for f in MEMBER_FILES[1:])
    if probs.ndim != 2 or not probs.shape[0] == ids.size == given.size:
        raise ValueError(f"{where}: pred_probs.npy {probs.shape}, train_ids.npy ({ids.size},) and given_labels.npy "
                         f"({given.size},) must be (M, C), (M,), (M,); write the folder again")
    train_ids, labels = np.asarray(train_ids), np.asarray(labels)
    pos = None
    if not np.array_equal(ids, train_ids):  # the same samples in another order: align by id
        unseen = int(np.isin(train_ids, ids, invert=True).sum())
        if ids.size != train_ids.size or unseen:
            raise ValueError(f"{where} scored other samples ({ids.size}, {unseen} of this detection's {train_ids.size} "
                             f"missing); give a detection of the same training set")
        pos = np.empty(ids.size, dtype=np.int64)
        pos[np.argsort(train_ids, kind="stable")] = np.argsort(ids, kind="stable")
    given = given if pos is None else given[pos]
    if not np.array_equal(given, labels):
        raise ValueError(f"{where} checked other labels ({int((given != labels).sum())} differ); give a detection "
                         f"of the same noisy labels (noise rate and seed)")
    member = Member(det_dir, probs, pos, member_digests([det_dir])[0])
    key = (member.digest, hashlib.sha256(np.ascontiguousarray(train_ids).tobytes()).hexdigest(), str(train_ids.dtype))
    if key not in _checked:  # the same files joined to the same samples: the same content, already checked
        content = hashlib.sha256()
        for _, block in member.blocks():
            if (not np.isfinite(block).all() or block.min(initial=0) < 0
                    or np.abs(block.sum(1) - 1).max(initial=0) > 1e-3):
                raise ValueError(f"{where}: pred_probs.npy rows are not probability vectors (softmax outputs)")
            content.update(block.tobytes())
        _checked[key] = content.hexdigest()
    return replace(member, content=_checked[key])


def member_probs(det_dir: str | Path, train_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M, C) float32 out-of-sample probabilities of detection ``det_dir`` for the samples ``train_ids`` (M,), in
    that order, checked against the given ``labels`` (M,) it must have scored. Raises as :func:`open_member`."""
    return open_member(det_dir, train_ids, labels).read()


def load_members(members: Sequence[str | Path], train_ids: np.ndarray, labels: np.ndarray) -> list[Member]:
    """Each member checked (:func:`open_member`) before anything trains; their probabilities stay on disk.

    Raises:
        FileNotFoundError, ValueError: as :func:`open_member`; members with another number of classes, or two
            members with the same probabilities (one folder listed twice, copied, or saved in another row order).
    """
    out = [open_member(m, train_ids, labels) for m in members]
    for i, m in enumerate(out):
        if m.shape != out[0].shape:
            raise ValueError(f"--cl.ensemble {members[i]}: probabilities {m.shape}, {members[0]}'s {out[0].shape}")
        same = [str(members[j]) for j in range(i) if out[j].content == m.content]
        if same:
            raise ValueError(f"--cl.ensemble lists the same detection twice ({same[0]} and {members[i]}); drop one")
    return out


def check_unchanged(members: Sequence[Member]) -> None:
    """Refuse ``members`` (from :func:`load_members`, checked before the folds trained, hours ago) whose files
    changed since, before they are averaged: their digests are taken again (:func:`member_digests`, which reads a
    file again only when its inode, size or times moved), so the mean reads the files they were checked as.

    Raises:
        ValueError: a member's files changed since (their digest differs).
    """
    for m, digest in zip(members, member_digests([m.path for m in members])):
        if digest != m.digest:
            raise ValueError(f"--cl.ensemble {m.path} changed while the folds trained (its files' digest differs); "
                             f"rerun the same command: the finished folds are reused")


def ensemble_mean(own: np.ndarray, members: Sequence[Member]) -> np.ndarray:
    """(M, C) float32 mean of this detection's probabilities ``own`` (M, C) and the ``members``' (from
    :func:`load_members`), every model weighted equally; ``own`` when none. Summed in place, member by member, in
    float32: the same bits as ``np.mean([own, *members], axis=0, dtype=np.float32)``.

    Raises:
        ValueError: a member with another shape than ``own``, or equal to it (this detection listed as its own
            member: it would count twice).
    """
    if not members:
        return own
    total = np.array(own, dtype=np.float32)
    for m in members:
        if m.shape != own.shape:
            raise ValueError(f"--cl.ensemble {m.path}: probabilities {m.shape}, this detection's {own.shape}")
        same = m.shape[0] > 0
        for rows, block in m.blocks():
            same = same and np.array_equal(block, own[rows])
            total[rows] += block
        if same:
            raise ValueError(f"--cl.ensemble {m.path} is this detection itself (the same probabilities); list only "
                             f"the other detections")
    total /= len(members) + 1
    return total


def check_study_members(members: Sequence[str | Path], cleanlab_runs: set[tuple[float, int]], train_ids: np.ndarray,
                        labels_by_rate: dict[float, np.ndarray]) -> None:
    """Before a study trains: ``--cl.ensemble`` is one list of members, made for one noise rate's labels by other
    detections than the row's own, so it serves one cleanlab detection: ``cleanlab_runs``, the (noise rate,
    training seed) of the study's cleanlab rows, must hold one entry (a remove-only, soft or gap twin shares it),
    and every member must match that rate's labels ((M,) in ``labels_by_rate``, for the samples ``train_ids``).

    Raises:
        ValueError: several cleanlab detections (another seed's row would average its own detection with members
            that may include it), or as :func:`load_members`.
    """
    if not members or not cleanlab_runs:
        return
    if len(cleanlab_runs) > 1:
        runs = ", ".join(f"{rate:g} noise seed {seed}" for rate, seed in sorted(cleanlab_runs))
        raise ValueError(f"--cl.ensemble serves one cleanlab detection, and this study has {len(cleanlab_runs)} "
                         f"({runs}); run one noise rate and one seed of the cleanlab row per study "
                         f"(--study.noise_rates, --study.seeds, --study.repeat_experiments)")
    (rate, _), = cleanlab_runs
    load_members(members, train_ids, labels_by_rate[rate])


def write_ensemble_record(out_dir: str | Path, members: Sequence[Member]) -> None:
    """Record in ``out_dir``/:data:`ENSEMBLE_FILE` that its ``pred_probs.npy`` is the mean with ``members`` (from
    :func:`load_members`): their paths and digests (written whole or not at all)."""
    from core.atomic import atomic_write_text

    atomic_write_text(Path(out_dir) / ENSEMBLE_FILE, json.dumps(
        {"members": [str(m.path) for m in members], "sha256": [m.digest for m in members]}, indent=2) + "\n")


def member_digests(members: Sequence[str | Path]) -> list[str]:
    """SHA-256 hex digest of each member's three files (:data:`MEMBER_FILES`, their bytes in that order): what the
    study's row fingerprint records, so that a finished row is not reused with other members, wherever their
    folders lie. A member is read once per process while its files' inodes, sizes and times stay the same (the
    last 256 members' digests are kept): a study asks for the digests of every cleanlab row, then again to train
    it (5 GB a member on ImageNet).

    Raises:
        FileNotFoundError: a member lacks one of the files.
    """
    out = []
    for m in members:
        stamps = []
        for f in MEMBER_FILES:
            path = Path(m) / f
            if not path.is_file():
                raise FileNotFoundError(f"--cl.ensemble {m}: no {f}; give a finished detection/ folder")
            st = path.stat()
            stamps.append((str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        out.append(_files_digest(tuple(stamps)))
    return out


@functools.lru_cache(maxsize=256)
def _files_digest(stamps: tuple[tuple, ...]) -> str:
    """SHA-256 hex of the files' bytes in order, read a block at a time; cached on each file's (path, device, inode,
    size, modification and change times), so a replaced or rewritten file is read again."""
    h = hashlib.sha256()
    for path, *_ in stamps:
        with open(path, "rb") as f:
            while chunk := f.read(BLOCK_BYTES):
                h.update(chunk)
    return h.hexdigest()
