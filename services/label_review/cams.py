"""Grad-CAM of the given and the suggested class for a review item, from the fold model that scored it."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from core.data.transforms import build_eval_crop, build_eval_transform
from services.gradcam_analyzer import GradCamAnalyzer, LoadedModel, load_model, overlay_cam, resnet_target_layer
from services.label_issues import AUM_RUN
from services.label_review.issues import IssueSet, ReviewItem

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("best.pt", "last.pt")
"""Looked for, in this order, in ``<issues>/fold_k/models/`` (what ``ImageNetTrainer`` writes per fold)."""
DISPLAY_PX = 224
"""Side of the shown overlays: the evaluation crop, so the heatmap lines up with what the model saw."""


class CamUnavailable(Exception):
    """No Grad-CAM for this item; the message says why and what to do, for the page."""


class CamRenderer:
    """Grad-CAM overlays (pytorch-grad-cam via :class:`services.gradcam_analyzer.GradCamAnalyzer`) of one item's
    given and suggested class.

    The model is the out-of-sample one: the fold run of ``services.label_issues`` that scored the item
    (``folds.npy`` -> ``fold_k/models/best.pt`` or ``last.pt``; for an AUM detection, ``aum_run/models/``), so the
    heatmaps explain the very probabilities shown; ``checkpoint`` replaces it for every item. Models are loaded on
    first use, the two most recent kept.

    Args:
        issues: the review items and their folder.
        checkpoint: one checkpoint for all items (None = the fold models).
        device: 'cpu', 'cuda[:N]', 'mps' or 'auto'.
    """

    def __init__(self, issues: IssueSet, checkpoint: Optional[Path] = None, device: str = "cpu"):
        self.issues, self.device = issues, device
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self._models: OrderedDict[Path, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # CAM hooks live on the shared model: one item at a time

    def checkpoint_for(self, item: ReviewItem) -> Optional[Path]:
        """The checkpoint explaining ``item``, None when there is none."""
        if self.checkpoint is not None:
            return self.checkpoint
        if self.issues.fold_of is None:  # an AUM detection (--cl.scores aum): its one run scored every item
            return self._run_checkpoint(AUM_RUN)
        return self._run_checkpoint(f"fold_{int(self.issues.fold_of[item.row])}")

    def _run_checkpoint(self, run: str) -> Optional[Path]:
        models = self.issues.directory / run / "models"
        return next((models / n for n in CHECKPOINT_NAMES if (models / n).is_file()), None)

    @property
    def available(self) -> bool:
        """Whether a checkpoint was given or any fold has one (the page shows a note instead of CAMs otherwise)."""
        if self.checkpoint is not None:
            return True
        if self.issues.fold_of is None:
            return self._run_checkpoint(AUM_RUN) is not None
        return any(self._run_checkpoint(f"fold_{k}") is not None for k in np.unique(self.issues.fold_of).tolist())

    def missing_note(self) -> str:
        """Why there are no CAMs, and the fix."""
        return (f"No Grad-CAM: no model checkpoint in {self.issues.directory}/fold_*/models/ or aum_run/models/ (the "
                f"detection runs of services.label_issues). Start the review with --checkpoint PATH to show where the "
                f"model looked.")

    def _model(self, path: Path) -> LoadedModel:
        if path in self._models:
            self._models.move_to_end(path)
            return self._models[path]
        try:
            loaded = load_model(path, self.device)
        except (FileNotFoundError, ValueError) as e:
            raise CamUnavailable(f"No Grad-CAM: {e}.") from None
        if list(loaded.classes) != self.issues.classes.wnids:
            raise CamUnavailable(f"No Grad-CAM: {path} was trained on {len(loaded.classes)} other classes than the "
                                 f"data's {len(self.issues.classes)}; pass --checkpoint with a model of this dataset.")
        # Grad-CAM needs gradients at layer4's output only: stopping autograd there skips the weight gradients of
        # every earlier stage (most of the backward pass).
        loaded.model.requires_grad_(False)
        resnet_target_layer(loaded.model).requires_grad_(True)
        self._models[path] = loaded
        while len(self._models) > 2:
            self._models.popitem(last=False)
        log.info("Grad-CAM model: %s (%s)", path, loaded.config.model.name)
        return loaded

    def render(self, item: ReviewItem, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Overlays for the given and the suggested class.

        Args:
            rgb: (H, W, 3) uint8 RGB image.

        Returns:
            Two (D, D, 3) uint8 RGB overlays of the evaluation crop, D = ``DISPLAY_PX``.

        Raises:
            CamUnavailable: no checkpoint, or one that does not load or fit the data.
        """
        path = self.checkpoint_for(item)
        if path is None:
            raise CamUnavailable(self.missing_note())
        with self._lock:
            loaded = self._model(path)
            data_cfg = loaded.config.data
            x = build_eval_transform(data_cfg, data_cfg.val_image_size)(image=rgb)["image"]  # (3, r, r)
            crop = build_eval_crop(data_cfg, DISPLAY_PX)(image=rgb)["image"]  # (D, D, 3), what the model sees
            with GradCamAnalyzer(loaded.model) as cam:
                maps, _ = cam.cams(torch.stack([x, x]), [item.given, item.suggested])  # (2, r, r) in [0, 1]
        return overlay_cam(crop, maps[0]), overlay_cam(crop, maps[1])
