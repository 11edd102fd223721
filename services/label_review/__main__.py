"""Command line of the label review: serve the review page, or export the decisions as a cleaning manifest.

    python -m services.label_review --issues DIR [--data.root ROOT] [--checkpoint PATH] [--host H] [--port N]
    python -m services.label_review export DIR --out MANIFEST_DIR [--data.root ROOT]

Exit code 2, with one line naming the problem and the fix, for unusable inputs; decisions are never rewritten.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger("services.label_review")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data.root", dest="root", type=Path, default=None,
                   help="dataset root the detection ran on (default: the bundled 10-class sample)")
    p.add_argument("--data.train_split", dest="train_split", default="train",
                   help="split folder the label_issues.csv paths are relative to (default: train)")


def review_parser() -> argparse.ArgumentParser:
    """Arguments of the review page."""
    p = argparse.ArgumentParser(prog="python -m services.label_review",
                                description="Review the samples services.label_issues flagged (Gradio page). "
                                            "`python -m services.label_review export DIR --out M` writes the "
                                            "manifest.")
    p.add_argument("--issues", type=Path, required=True,
                   help="folder written by python -m services.label_issues (its --logging.output_dir)")
    _data_args(p)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model for Grad-CAM (default: the fold model that scored each image, DIR/fold_k/models/)")
    p.add_argument("--device", default="cpu", help="Grad-CAM device: cpu, cuda[:N], mps or auto (default: cpu)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or GRADIO_SERVER_PORT)")
    return p


def export_parser() -> argparse.ArgumentParser:
    """Arguments of ``export``."""
    p = argparse.ArgumentParser(prog="python -m services.label_review export",
                                description="Write removal_list.txt and relabel_map.json from the review's last "
                                            "decisions (the manifest core.label_noise applies).")
    p.add_argument("issues", type=Path, help="the reviewed label-issues folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the manifest (not the issues folder)")
    _data_args(p)
    return p


def export_main(argv: Sequence[str]) -> int:
    """``export DIR --out M``: write the manifest and print the summary; 0, or 2 on bad input."""
    from services.label_review.decisions import DecisionLog, export_manifest, summarize, summary_lines
    from services.label_review.issues import load_issues

    a = export_parser().parse_args(list(argv))
    issues = load_issues(a.issues, a.root, a.train_split)
    decisions = DecisionLog(issues, repair=False)
    removal, relabel = export_manifest(issues, decisions, a.out)
    for line in summary_lines(summarize(issues, decisions.latest)):
        print(line)
    print(f"wrote {removal} and {relabel}")
    return 0


def review_main(argv: Sequence[str]) -> int:
    """Load and check everything, then serve the page until interrupted; 2 on bad input (before serving)."""
    from services.label_review.app import build_app, launch
    from services.label_review.cams import CamRenderer
    from services.label_review.decisions import DecisionLog
    from services.label_review.issues import load_issues
    from services.label_review.session import ReviewSession

    a = review_parser().parse_args(list(argv))
    issues = load_issues(a.issues, a.root, a.train_split)
    if a.checkpoint is not None and not a.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {a.checkpoint} not found; pass a best.pt/last.pt of this dataset, "
                                f"or leave it out to use the fold models")
    session = ReviewSession(issues, DecisionLog(issues), CamRenderer(issues, a.checkpoint, a.device))
    if not session.cams.available:
        log.warning(session.cams.missing_note())
    s = session.summary()
    log.info("%d flagged, %d reviewed, %d skipped; decisions in %s", s["flagged"], s["reviewed"], s["skip"],
             session.log.path)
    launch(build_app(session), a.host, a.port)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch to ``export`` or the review page through :func:`core.cli.run_entry`, the contract every command
    shares (logging, and bad input, :class:`~services.label_review.issues.ReviewInputError` included, as one
    ``error:`` line with exit code 2); returns the exit code."""
    from core.cli import run_entry

    argv = list(sys.argv[1:] if argv is None else argv)
    return run_entry(lambda: export_main(argv[1:]) if argv[:1] == ["export"] else review_main(argv))


if __name__ == "__main__":
    sys.exit(main())
