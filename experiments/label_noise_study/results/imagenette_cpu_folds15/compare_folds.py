"""Detection at 20 % noise on the finished folds: the 15-epoch fold models against the study's 8-epoch ones, and the
mean of both (two fold models per sample, neither of which saw it), on the same held-out samples (same flips, same
fold assignment). Run from the repository root; it needs both runs' folders (``runs/`` is not kept in git)."""
import os

import numpy as np
from services.label_issues import detection_sweep

R = "experiments/label_noise_study/runs/cpu"
old = f"{R}/noise20_cleanlab/detection"
new = "experiments/label_noise_study/runs/folds15/noise20_cleanlab/detection"
ids, probs8, mask = (np.load(f"{old}/{f}.npy") for f in ("train_ids", "pred_probs", "noise_mask"))
assert np.array_equal(np.load(f"{R}/noise20/train_ids.npy"), ids)
assert np.array_equal(np.load(f"{R}/clean/train_ids.npy"), ids)
given, true = np.load(f"{R}/noise20/train_labels.npy"), np.load(f"{R}/clean/train_labels.npy")
assert np.array_equal(given != true, mask)
folds = np.load(f"{old}/folds.npy")
assert np.array_equal(folds, np.load(f"{new}/folds.npy"))
done = [k for k in range(4) if os.path.exists(f"{new}/fold_{k}/pred_probs.npy")]
sel = np.concatenate([np.flatnonzero(folds == k) for k in done])
p15 = np.concatenate([np.load(f"{new}/fold_{k}/pred_probs.npy") for k in done])
assert np.array_equal(np.concatenate([np.load(f"{new}/fold_{k}/scored_ids.npy") for k in done]), ids[sel])
print(f"finished folds {done}: {sel.size} samples, {mask[sel].sum()} flips")
print("| fold models | agreement with true labels | rule | flagged | precision | recall | F1 | AP "
      "| best precision at recall >= 0.8 |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
runs = (("8 epochs (the study's)", probs8[sel]), ("15 epochs (folds_15ep.yaml)", p15),
        ("mean of the 8- and 15-epoch probabilities", (probs8[sel] + p15) / 2))
for name, p in runs:
    agree = (p.argmax(1) == true[sel]).mean()
    for r in detection_sweep(given[sel], p, mask[sel]):
        shown = r["rule"] in ("filter_by=prune_by_noise_rate", "filter_by=both", "filter_by=low_self_confidence")
        if shown or r["rule"].startswith("rank=self_confidence"):
            ap = "" if np.isnan(r["average_precision"]) else f"{r['average_precision']:.3f}"
            bp = "" if np.isnan(r["precision_at_recall"]) else f"{r['precision_at_recall']:.3f}"
            print(f"| {name} | {agree:.3f} | {r['rule']} | {r['num_flagged']:,} | {r['precision']:.3f} | "
                  f"{r['recall']:.3f} | {r['f1']:.3f} | {ap} | {bp} |")
