"""Record (run once, not part of the library): the seed-0 and seed-1 fold models of the b15 study's 20 % cleanlab rows,
on the 3 folds (of 4) that both finished, alone and averaged, scored with services.label_issues.detection_sweep.

    PYTHONPATH=. python experiments/label_noise_study/results/imagenette_b15/partial_ensemble.py \\
        --data.root ../shared/data/imagenette2-224 --config experiments/label_noise_study/imagenette_cpu.yaml \\
        --config experiments/label_noise_study/imagenette_b15.yaml
"""
import sys
from pathlib import Path
import numpy as np
from core.data.manager import ImageNetDataManager
from services.label_issues import detection_sweep, stratified_folds
from services.noise_study import parse_study_config, study_noise

R = Path("experiments/label_noise_study/results/imagenette_b15")
cfg, study, cl = parse_study_config(Path("experiments/label_noise_study"), sys.argv[1:])
base = ImageNetDataManager(cfg.data, seed=0, progress=False)
noisy = study_noise(base, 0.2, study)
fold_of = stratified_folds(noisy.labels, cl.folds, cl.fold_seed)
keep = np.isin(fold_of, [0, 1, 2])
sets = {}
for row in ("noise20_cleanlab", "noise20_cleanlab_seed1"):
    p = np.zeros((len(base.train_ids), base.num_classes), np.float32)
    for k in range(3):
        held = fold_of == k
        d = R / row / "detection" / f"fold_{k}"
        assert np.array_equal(np.load(d / "scored_ids.npy"), base.train_ids[held])
        p[held] = np.load(d / "pred_probs.npy")
    sets[row] = p[keep]
sets["mean of both seeds"] = (sets["noise20_cleanlab"] + sets["noise20_cleanlab_seed1"]) / 2
y, m = noisy.labels[keep], noisy.noise_mask[keep]
print(f"{keep.sum()} samples (folds 0-2), {m.sum()} flipped")
for name, p in sets.items():
    print(f"## {name}: top-1 vs true labels {(p.argmax(1) == np.where(m, -1, y)).sum() / (~m).sum() * 100:.1f} % on the clean ones")
    for r in detection_sweep(y, p, m):
        print(f"  {r['rule']:32s} n={r['num_flagged']:5d} P={r['precision']:.3f} R={r['recall']:.3f} F1={r['f1']:.3f}"
              f" AP={r['average_precision']:.3f} P@R0.8={r['precision_at_recall']:.3f}")
