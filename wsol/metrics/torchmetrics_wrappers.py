"""``torchmetrics.Metric`` wrappers: the same numbers, with states summed across DDP ranks.

Every state is a fixed-size count tensor reduced with ``dist_reduce_fx="sum"``, so memory does not
grow with the number of images and the synced result equals a single-process evaluation of all images.
Box extraction runs on CPU with OpenCV semantics (exactness needs it); the PxAP histograms and the
segmentation confusion matrices are computed with torch on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from wsol.metrics.accumulators import BOX_MODES, BoxAccumulator
from wsol.metrics.masks import pixel_curves, pxap_bin_edges, pxap_from_curves
from wsol.metrics.segmentation import segmentation_scores

__all__ = ["BoxLocalizationMetric", "PxAPMetric", "SegmentationMetric"]


class BoxLocalizationMetric(Metric):
    """MaxBoxAcc (v1) and MaxBoxAccV2, plus Top-1 Loc when classification correctness is given.

    ``compute()`` returns tensors (percent) under ``"MaxBoxAccV2"``, ``"MaxBoxAccV2_IoU{t}"``,
    ``"MaxBoxAcc"`` (largest contour at IoU 50), ``"MaxBoxAcc_IoU{t}"`` and, when every update had
    ``cls_correct``, ``"Top1Loc"`` (largest contour, IoU 50, best threshold; a ``wsol`` extension) and
    ``"Top1Loc_V2"`` (all contours, mean over IoUs).

    Args:
        cam_curve_interval: Δ of the CAM threshold grid (0.01 keeps validation cheap; the papers use 0.001).
        iou_thresholds: IoU thresholds in percent (50 must be among them).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self, cam_curve_interval: float = 0.01, iou_thresholds: Sequence[int] = (30, 50, 70), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._core = BoxAccumulator(cam_curve_interval, iou_thresholds)
        shape = (len(self._core.iou_thresholds), len(self._core.thresholds))
        for mode in BOX_MODES:
            self.add_state(f"correct_{mode}", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(f"top1_{mode}", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_with_class", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, scoremaps: torch.Tensor, gt_boxes: Sequence[torch.Tensor], cls_correct: torch.Tensor | None = None
    ) -> None:
        """Add a batch.

        Args:
            scoremaps: ``(B, H, W)`` maps in [0, 1] (see :func:`wsol.metrics.prepare_scoremaps`).
            gt_boxes: ``B`` tensors ``(k_i, 4)``, inclusive ``x0, y0, x1, y1`` in score-map pixels.
            cls_correct: ``(B,)`` bool, whether each image's top-1 class is right.
        """
        batch = BoxAccumulator(self._core.cam_curve_interval, self._core.iou_thresholds)
        batch.update(
            scoremaps.detach().to("cpu", torch.float64).numpy(),
            [torch.as_tensor(b).detach().cpu().numpy() for b in gt_boxes],
            None if cls_correct is None else cls_correct.detach().cpu().numpy(),
        )
        for mode in BOX_MODES:
            getattr(self, f"correct_{mode}").add_(torch.from_numpy(batch.correct[mode]).to(self.device))
            getattr(self, f"top1_{mode}").add_(torch.from_numpy(batch.top1_correct[mode]).to(self.device))
        self.n_images += batch.n_images
        self.n_with_class += batch.n_with_class

    def compute(self) -> dict[str, torch.Tensor]:
        """The metrics as float64 tensors (percent)."""
        core = self._core
        core.reset()
        for mode in BOX_MODES:
            core.correct[mode] = getattr(self, f"correct_{mode}").cpu().numpy().copy()
            core.top1_correct[mode] = getattr(self, f"top1_{mode}").cpu().numpy().copy()
        core.n_images, core.n_with_class = int(self.n_images), int(self.n_with_class)
        result = core.compute()
        out: dict[str, float] = {}
        for mode, values in result.modes.items():
            out[mode] = values.value
            out.update({f"{mode}_IoU{t}": v for t, v in values.per_iou.items()})
        if result.modes["MaxBoxAcc"].top1 is not None:
            out["Top1Loc"] = result.modes["MaxBoxAcc"].top1_value
            out["Top1Loc_V2"] = result.modes["MaxBoxAccV2"].top1_value
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


class PxAPMetric(Metric):
    """PxAP and MaxPIoU from pooled pixel histograms (``compute()`` keys ``"PxAP"``, ``"MaxPIoU"``).

    Args:
        cam_curve_interval: Δ of the histogram bins.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, cam_curve_interval: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._edges = pxap_bin_edges(cam_curve_interval)
        n_bins = len(self._edges) - 1
        self.add_state("gt_true", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("gt_false", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scoremaps: torch.Tensor, gt_masks: torch.Tensor) -> None:
        """Add a batch: ``(B, H, W)`` maps in [0, 1] and uint8 masks (0 bg, 1 fg, 255 ignore)."""
        if scoremaps.shape != gt_masks.shape:
            raise ValueError(f"score maps {tuple(scoremaps.shape)} and masks {tuple(gt_masks.shape)} differ")
        scores = scoremaps.detach().to(torch.float64).reshape(-1)
        if scores.numel() and not (scores.min() >= 0 and scores.max() <= 1):
            raise ValueError("score maps must be finite and within [0, 1]")
        labels = gt_masks.detach().reshape(-1).to(torch.long)
        if ((labels != 0) & (labels != 1) & (labels != 255)).any():
            raise ValueError("GT masks may only contain 0, 1 and 255")
        edges = torch.as_tensor(self._edges, dtype=torch.float64, device=scores.device)
        # bucketize(right=True) - 1 is searchsorted(side="right") - 1: the bin [e_i, e_{i+1}).
        index = (torch.bucketize(scores, edges, right=True) - 1).clamp_(0, len(edges) - 2)
        n_bins = len(edges) - 1
        counts = torch.bincount(labels.clamp(max=2) * n_bins + index, minlength=3 * n_bins)
        self.gt_false += counts[:n_bins].to(self.gt_false.device)
        self.gt_true += counts[n_bins : 2 * n_bins].to(self.gt_true.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"PxAP": ..., "MaxPIoU": ...}`` in percent."""
        curves = pixel_curves(self.gt_true.cpu().numpy(), self.gt_false.cpu().numpy(), self._edges)
        iou = np.nan_to_num(curves.iou, nan=-1.0)
        return {
            "PxAP": torch.tensor(pxap_from_curves(curves), dtype=torch.float64),
            "MaxPIoU": torch.tensor(float(iou.max() * 100), dtype=torch.float64),
        }


class SegmentationMetric(Metric):
    """WSSS confusion-matrix metrics of label maps (``compute()``: ``"mIoU"``, ``"pixel_accuracy"``,
    and per-class ``"IoU"``, ``"precision"``, ``"recall"``, ``"F1"``, ``"FPR"`` tensors).

    Args:
        num_classes: ``K``, background included.
        ignore_index: Ground-truth value of pixels that are not scored.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add predicted and ground-truth label maps of equal shape."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ")
        keep = gt != self.ignore_index
        truth, guess = gt[keep].to(torch.long), pred[keep].to(torch.long)
        k = self.num_classes
        if truth.numel() and (truth.min() < 0 or truth.max() >= k or guess.min() < 0 or guess.max() >= k):
            raise ValueError(f"labels must lie in [0, {k}) or equal ignore_index {self.ignore_index}")
        counts = torch.bincount(truth * k + guess, minlength=k * k).reshape(k, k)
        self.confusion += counts.to(self.confusion.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """Scores of the accumulated confusion matrix."""
        result = segmentation_scores(self.confusion.cpu().numpy())
        out = {"mIoU": result.miou, "pixel_accuracy": result.pixel_accuracy}
        tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
        for name in ("iou", "precision", "recall", "f1", "fpr"):
            key = {"iou": "IoU", "f1": "F1", "fpr": "FPR"}.get(name, name)
            tensors[key] = torch.from_numpy(getattr(result, name))
        return tensors
