"""Scoring of pseudo-masks against GT masks with :mod:`wsol.metrics`' confusion matrices and sweep.

Two gaps of the metrics are bridged here rather than by re-implementing them:

* :class:`~wsol.metrics.BackgroundThresholdSweep` takes the score maps of *all* classes; with COCO's 80
  classes at full image size that is hundreds of MB per image. Each image is therefore swept in the label
  space of its own classes (the stored ones plus those of its GT) and the small matrices are added into the
  full ``(K + 1) x (K + 1)`` ones, which gives the same counts.
* :class:`~wsol.metrics.ConfusionMatrix` rejects predicted labels outside ``[0, K]``, so pixels a pseudo-mask
  marks 255 (ignore band) are left out of its scores, like GT-ignored pixels; the report says how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wsol.data.schema import IGNORE_INDEX
from wsol.metrics import BackgroundThresholdSweep, ConfusionMatrix, SegmentationResult

__all__ = ["MaskScorer", "ThresholdSweep"]


class ThresholdSweep:
    """Confusion matrices of a run's stored maps at several background thresholds.

    Args:
        num_classes: object classes ``K`` (labels ``1..K``, background 0).
        thresholds: background scores to sweep.
    """

    def __init__(self, num_classes: int, thresholds: Sequence[float]) -> None:
        self.num_classes = int(num_classes)
        self.thresholds = [float(t) for t in thresholds]
        self.total = BackgroundThresholdSweep(self.num_classes + 1, self.thresholds)

    def update(self, maps: np.ndarray, classes: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: normalised maps ``(k, H, W)`` of the classes ``classes`` and its GT label map."""
        classes = np.asarray(classes, dtype=np.int64)
        gt_classes = np.unique(gt[(gt != 0) & (gt != IGNORE_INDEX)]).astype(np.int64) - 1
        if gt_classes.size and (gt_classes.min() < 0 or gt_classes.max() >= self.num_classes):
            raise ValueError(f"GT mask has labels outside [0, {self.num_classes}] (255 = ignore)")
        union = np.union1d(classes, gt_classes)  # ascending: ties keep going to the lowest class index
        scores = np.zeros((1, len(union), *gt.shape), np.float64)
        scores[0, np.searchsorted(union, classes)] = maps
        present = np.isin(union, classes)[None]
        lookup = np.full(256, IGNORE_INDEX, np.int64)
        lookup[0], lookup[union + 1] = 0, np.arange(1, len(union) + 1)
        local = BackgroundThresholdSweep(len(union) + 1, self.thresholds)
        local.update(scores, present, lookup[gt][None])
        index = np.concatenate([[0], union + 1])
        self.total.matrices[:, index[:, None], index[None, :]] += local.matrices

    def compute(self) -> tuple[list[SegmentationResult], int]:
        """Scores at every threshold and the index of the best (highest mIoU, first on ties)."""
        return self.total.compute()


class MaskScorer:
    """The scores a pseudo-mask run reports: its masks, an all-background baseline and an optional sweep.

    Args:
        num_classes: object classes ``K``.
        class_names: their names (background is added first).
        sweep: background thresholds to sweep over the stored maps, or None.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str], sweep: Sequence[float] | None = None) -> None:
        self.names = ["background", *map(str, class_names)]
        self.masks = ConfusionMatrix(num_classes + 1)
        self.baseline = ConfusionMatrix(num_classes + 1)
        self.sweep = ThresholdSweep(num_classes, sweep) if sweep is not None else None
        self.gt_pixels = 0
        self.ignored_pixels = 0
        self.images = 0

    @property
    def has_gt(self) -> bool:
        """Whether any GT mask was seen."""
        return self.images > 0

    def update_gt(self, gt: np.ndarray) -> None:
        """Count one GT mask (and score the all-background prediction on it)."""
        self.baseline.update(np.zeros_like(gt), gt)
        self.gt_pixels += int((gt != IGNORE_INDEX).sum())
        self.images += 1

    def update_sweep(self, stored: dict[str, np.ndarray], gt: np.ndarray) -> None:
        """Add one image's stored maps to the sweep."""
        if self.sweep is not None:
            self.sweep.update(stored["maps"], stored["classes"], gt)

    def update_masks(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one written pseudo-mask; its 255 pixels are left out (see the module docstring)."""
        if pred.shape != gt.shape:
            raise ValueError(f"pseudo-mask {pred.shape} and GT mask {gt.shape} differ in size")
        self.ignored_pixels += int(((gt != IGNORE_INDEX) & (pred == IGNORE_INDEX)).sum())
        self.masks.update(pred, np.where(pred == IGNORE_INDEX, IGNORE_INDEX, gt))

    def masks_from_sweep(self, threshold: float) -> None:
        """Take the sweep's matrix at ``threshold`` as the masks' (they are those label maps)."""
        index = self.sweep.thresholds.index(float(threshold))
        self.masks.matrix = self.sweep.total.matrices[index].copy()

    def sweep_report(self) -> dict[str, Any]:
        """``thresholds``, ``mIoU`` (percent) at each, ``best_threshold`` and ``best_mIoU``."""
        if self.sweep is None:
            raise ValueError("this scorer has no sweep")
        results, best = self.sweep.compute()
        return {
            "thresholds": self.sweep.thresholds,
            "mIoU": [r.miou for r in results],
            "best_threshold": self.sweep.thresholds[best],
            "best_mIoU": results[best].miou,
        }

    def report(self) -> dict[str, Any]:
        """Scores of the written masks (per class, percent mIoU) and of the all-background baseline."""
        scores = self.masks.compute().to_dict(self.names)
        scores["ignored_fraction"] = self.ignored_pixels / self.gt_pixels if self.gt_pixels else 0.0
        return {
            "num_images": self.images,
            "scores": scores,
            "all_background": {"mIoU": self.baseline.compute().miou},
        }
