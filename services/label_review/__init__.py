"""Label review: a person confirms, relabels or removes each sample ``services.label_issues`` flagged, and the
decisions become the cleaning manifest.

Confident learning gives scores, not verdicts: people confirmed about half of what it flagged on ImageNet val as
real errors (Northcutt, Athalye & Mueller, NeurIPS Datasets 2021, labelerrors.com); commercial tools (Cleanlab
Studio, Visual Layer) put a review screen between detection and cleaning. This one works from our own output:

    python -m services.label_review --issues DIR [--data.root ROOT] [--checkpoint PATH] [--port N]
    python -m services.label_review export DIR --out MANIFEST_DIR

The page shows the flagged images worst label-quality score first: the image, the given and suggested label
(names and WNIDs), the out-of-sample top-5, Grad-CAM for both classes from the fold model that scored the image,
and the position in the queue. Keep, relabel to the suggestion or to any class, remove or skip, by button or key;
filter by class or by given -> suggested pair; bulk-accept a filter's confident suggestions after a confirmation.
Decisions go to ``DIR/review/decisions.jsonl`` (append-only, fsynced); reopening resumes at the first undecided
image. ``export`` writes ``removal_list.txt`` and ``relabel_map.json`` for ``core.label_noise``.
"""

from services.label_review.decisions import (DECISIONS, FIELDS, Decision, DecisionLog, export_manifest,
                                             latest_decisions, make_decision, manifest_entries, summarize)
from services.label_review.issues import ClassList, IssueSet, ReviewInputError, ReviewItem, load_issues
from services.label_review.session import ReviewSession

__all__ = ["DECISIONS", "FIELDS", "ClassList", "Decision", "DecisionLog", "IssueSet", "ReviewInputError",
           "ReviewItem", "ReviewSession", "export_manifest", "latest_decisions", "load_issues", "make_decision",
           "manifest_entries", "summarize"]
