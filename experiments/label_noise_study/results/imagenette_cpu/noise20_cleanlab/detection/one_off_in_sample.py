# One-off: in-sample detection sweep with the finished noise20 row (seed 0), before the K-fold detection lands.
import dataclasses, json, sys
from pathlib import Path
import numpy as np
sys.argv = [sys.argv[0]]
from core.data.manager import ImageNetDataManager
from core.label_noise import inject_symmetric_noise
from core.cli import build_trainer
from services.label_issues import detection_sweep, eval_loader, predict_proba
from services.noise_study import parse_study_config, run_config
argv = ["--data.root", "../shared/data/imagenette2-224", "--config", "experiments/label_noise_study/imagenette_cpu.yaml",
        "--logging.output_dir", "/work/main/experiments/label_noise_study/runs/cpu"]
cfg, study, cl = parse_study_config(Path("experiments/label_noise_study").resolve(), argv)
base = ImageNetDataManager(cfg.data, seed=0, progress=False)
noisy = inject_symmetric_noise(base.train_labels, 0.2, base.num_classes, study.noise_seed)
data = base.clone(seed=0); data.set_train_subset(base.train_ids, noisy.labels)
row = Path(cfg.logging.output_dir) / "noise20"
assert np.array_equal(np.load(row / "train_labels.npy"), noisy.labels)
trainer = build_trainer(run_config(cfg, row, "noise20", study.group), data=data)
trainer.fit()
probs = predict_proba(trainer.unwrapped_model(), eval_loader(data, data.train_ids, data.train_labels, 128), trainer.device, None, progress=True)
np.save("/work/runs/study/insample_noise20_probs.npy", probs)
truth = base.train_labels
print("in-sample agreement with given", (probs.argmax(1) == noisy.labels).mean(), "with truth", (probs.argmax(1) == truth).mean())
for r in detection_sweep(noisy.labels, probs, noisy.noise_mask):
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})
