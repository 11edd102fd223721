# One-off: kNN label probabilities on the noise20 model's penultimate features (in-sample), and with the model's probs.
import sys
from pathlib import Path
import numpy as np, torch
from core.data.manager import ImageNetDataManager
from core.label_noise import inject_symmetric_noise
from core.cli import build_trainer
from core.evaluate import predict
from services.label_issues import detection_sweep, eval_loader
from services.noise_study import parse_study_config, run_config
argv = ["--data.root", "../shared/data/imagenette2-224", "--config", "experiments/label_noise_study/imagenette_cpu.yaml",
        "--logging.output_dir", "/work/main/experiments/label_noise_study/runs/cpu"]
cfg, study, cl = parse_study_config(Path("experiments/label_noise_study").resolve(), argv)
base = ImageNetDataManager(cfg.data, seed=0, progress=False)
noisy = inject_symmetric_noise(base.train_labels, 0.2, base.num_classes, study.noise_seed)
data = base.clone(seed=0); data.set_train_subset(base.train_ids, noisy.labels)
row = Path(cfg.logging.output_dir) / "noise20"
feat_file = Path("/work/runs/study/insample_noise20_feats.npy")
if not feat_file.exists():
    trainer = build_trainer(run_config(cfg, row, "noise20", study.group), data=data)
    trainer.fit()
    model = trainer.unwrapped_model(); fc = model.fc; model.fc = torch.nn.Identity()
    feats = torch.cat([f for f, _ in predict(model, eval_loader(data, data.train_ids, data.train_labels, 128), trainer.device, progress=True)]).numpy()
    model.fc = fc
    np.save(feat_file, feats)
feats = np.load(feat_file)
probs = np.load("/work/runs/study/insample_noise20_probs.npy")
f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
sim = f @ f.T
np.fill_diagonal(sim, -np.inf)
y = noisy.labels; C = 10
order = np.argsort(-sim, axis=1)
def show(name, p):
    best = {}
    for r in detection_sweep(y, p, noisy.noise_mask):
        if r["rule"].startswith(("filter_by=prune_by_noise_rate", "filter_by=both", "rank=self_confidence")):
            print(name, r["rule"][:40], "n", r["num_flagged"], "P %.3f R %.3f AP %s P@R.8 %s R@P.9 %s" % (r["precision"], r["recall"], round(r["average_precision"], 3), round(r["precision_at_recall"], 3), round(r["recall_at_precision"], 3)))
for k in (10, 30, 100):
    nb = order[:, :k]
    counts = np.zeros((len(y), C)); np.add.at(counts, (np.repeat(np.arange(len(y)), k), y[nb].ravel()), 1)
    pk = (counts + 0.1) / (k + 0.1 * C)
    show(f"knn{k}", pk.astype(np.float32))
    show(f"knn{k}+model", ((pk + probs) / 2).astype(np.float32))
show("model", probs)
