"""Streaming accumulators for the box and mask metrics: fixed-size counts, mergeable, order-free.

``BoxAccumulator`` keeps, per box mode, one count of correct images per (IoU threshold, CAM threshold):
its memory does not grow with the number of images, partial accumulators merge by addition, and the
image order cannot matter. ``MaskAccumulator`` keeps the two pixel-score histograms of PxAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsol.metrics.boxes import best_box_ious, check_boxes
from wsol.metrics.masks import (
    PixelCurves,
    check_gt_masks,
    pixel_curves,
    pxap_bin_edges,
    pxap_from_curves,
    score_histograms,
)
from wsol.metrics.scoremaps import cam_thresholds, check_scoremaps

__all__ = [
    "BOX_MODES",
    "BoxAccumulator",
    "BoxModeResult",
    "BoxResult",
    "MaskAccumulator",
    "MaskResult",
    "Top1Result",
]

# Result key -> whether the mode uses all contours (MaxBoxAccV2) or only the largest one (v1).
BOX_MODES = {"MaxBoxAcc": False, "MaxBoxAccV2": True}


@dataclass(frozen=True)
class Top1Result:
    """Top-1 Loc at one IoU threshold (a ``wsol`` extension: the reference has no Top-1 Loc).

    Attributes:
        max_over_thresholds: Best accuracy over the CAM thresholds (percent), counting an image only
            when its box is correct and its top-1 class is right.
        at_gt_known_optimal_threshold: The same count at the GT-known optimal CAM threshold.
        cam_threshold_of_max: First CAM threshold attaining ``max_over_thresholds``.
    """

    max_over_thresholds: float
    at_gt_known_optimal_threshold: float
    cam_threshold_of_max: float


@dataclass(frozen=True)
class BoxModeResult:
    """MaxBoxAcc of one box mode.

    Attributes:
        value: MaxBoxAcc at IoU 50 (v1) or the mean over the IoU thresholds (V2), percent.
        per_iou: ``iou -> max over τ of BoxAcc(τ, iou)``.
        best_cam_threshold: ``iou -> first τ attaining it`` (optimised per IoU, over the whole set).
        curves: ``iou -> BoxAcc(τ)`` in percent for every τ of the grid.
        top1: ``iou -> Top1Result`` when classification correctness was given for every image.
        top1_value: Top-1 Loc summarised like ``value`` (IoU 50 for v1, mean over IoUs for V2).
    """

    value: float
    per_iou: dict[int, float]
    best_cam_threshold: dict[int, float]
    curves: dict[int, np.ndarray]
    top1: dict[int, Top1Result] | None = None
    top1_value: float | None = None


@dataclass(frozen=True)
class BoxResult:
    """Result of :class:`BoxAccumulator`.

    Attributes:
        cam_curve_interval: Δ of the threshold grid.
        n_images: Number of images evaluated.
        iou_thresholds: IoU thresholds in percent.
        cam_thresholds: The τ grid.
        modes: ``"MaxBoxAcc"`` (largest contour, v1) and/or ``"MaxBoxAccV2"`` (all contours).
    """

    cam_curve_interval: float
    n_images: int
    iou_thresholds: tuple[int, ...]
    cam_thresholds: np.ndarray
    modes: dict[str, BoxModeResult]

    def to_dict(self) -> dict:
        """JSON-ready dict in the layout of the reference files (``curves`` included)."""
        out: dict = {
            "cam_curve_interval": self.cam_curve_interval,
            "n_images": self.n_images,
            "iou_thresholds": list(self.iou_thresholds),
        }
        curves: dict = {"cam_thresholds": self.cam_thresholds.tolist()}
        top1: dict = {}
        for name, mode in self.modes.items():
            out[name] = {
                "value": mode.value,
                "per_iou": {str(k): v for k, v in mode.per_iou.items()},
                "best_cam_threshold": {str(k): v for k, v in mode.best_cam_threshold.items()},
            }
            curves[name] = {str(k): v.tolist() for k, v in mode.curves.items()}
            if mode.top1 is not None:
                top1[name] = {
                    "value": mode.top1_value,
                    "per_iou": {str(k): vars(t) for k, t in mode.top1.items()},
                }
        if top1:
            top1["note"] = "wsol extension (not in the reference): an image counts only if its top-1 class is right"
            out["Top1Loc"] = top1
        out["curves"] = curves
        return out


class BoxAccumulator:
    """Streaming MaxBoxAcc (v1) and MaxBoxAccV2 with fixed memory.

    Args:
        cam_curve_interval: Δ of the CAM threshold grid: 0.001 (papers) or 0.01 (reference CLI).
        iou_thresholds: IoU thresholds in percent; v1's headline value needs 50 among them.
        modes: Which of ``"MaxBoxAcc"`` and ``"MaxBoxAccV2"`` to compute (both by default).
    """

    def __init__(
        self,
        cam_curve_interval: float = 0.001,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        modes: Sequence[str] = ("MaxBoxAcc", "MaxBoxAccV2"),
    ) -> None:
        unknown = [m for m in modes if m not in BOX_MODES]
        if unknown or not modes:
            raise ValueError(f"modes must be a non-empty subset of {list(BOX_MODES)}, got {list(modes)}")
        self.iou_thresholds = tuple(int(t) for t in iou_thresholds)
        bad = [t for t, v in zip(self.iou_thresholds, iou_thresholds, strict=True) if not 0 < t <= 100 or t != v]
        if bad or not self.iou_thresholds:
            raise ValueError(f"iou_thresholds must be integers in (0, 100] (percent), got {list(iou_thresholds)}")
        if "MaxBoxAcc" in modes and 50 not in self.iou_thresholds:
            raise ValueError("MaxBoxAcc (v1) is defined at IoU 50; include 50 in iou_thresholds")
        self.cam_curve_interval = float(cam_curve_interval)
        self.thresholds = cam_thresholds(self.cam_curve_interval)
        self.modes = tuple(m for m in BOX_MODES if m in modes)
        # IoU >= iou / 100 compared in float64 exactly as the reference does.
        self._cutoffs = np.array([t / 100 for t in self.iou_thresholds])[:, None]
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        shape = (len(self.iou_thresholds), len(self.thresholds))
        self.correct = {m: np.zeros(shape, np.int64) for m in self.modes}
        self.top1_correct = {m: np.zeros(shape, np.int64) for m in self.modes}
        self.n_images = 0
        self.n_with_class = 0

    def update(
        self,
        scoremaps: np.ndarray,
        gt_boxes: Sequence[np.ndarray],
        cls_correct: np.ndarray | Sequence[bool] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            scoremaps: ``(B, H, W)`` float maps in [0, 1].
            gt_boxes: ``B`` arrays ``(k_i, 4)`` of inclusive ``x0, y0, x1, y1`` in score-map pixels.
            cls_correct: ``(B,)`` whether each image's top-1 class is right, for Top-1 Loc.
        """
        scoremaps = np.asarray(scoremaps)
        if scoremaps.ndim == 2:
            scoremaps = scoremaps[None]
        check_scoremaps(scoremaps)
        if len(gt_boxes) != len(scoremaps):
            raise ValueError(f"{len(scoremaps)} score maps but {len(gt_boxes)} GT box arrays")
        if cls_correct is not None:
            cls_correct = np.asarray(cls_correct, dtype=bool).reshape(-1)
            if len(cls_correct) != len(scoremaps):
                raise ValueError(f"{len(scoremaps)} score maps but {len(cls_correct)} cls_correct entries")
        boxes = [check_boxes(np.asarray(b).reshape(-1, 4), f"GT boxes of image {i}") for i, b in enumerate(gt_boxes)]
        height, width = scoremaps.shape[-2:]
        for i, (scoremap, gt) in enumerate(zip(scoremaps, boxes, strict=True)):
            if len(gt) == 0:
                raise ValueError(f"image {i} of the batch has no GT box")
            outside = (gt[:, 0] >= width) | (gt[:, 1] >= height)
            if outside.any():
                raise ValueError(
                    f"GT boxes of image {i} lie wholly outside the {height}x{width} score map: {gt[outside].tolist()}"
                )
            ious = best_box_ious(scoremap, gt, self.thresholds, "MaxBoxAcc" in self.modes, "MaxBoxAccV2" in self.modes)
            for mode, iou in zip(("MaxBoxAcc", "MaxBoxAccV2"), ious, strict=True):
                if iou is None:
                    continue
                hits = iou[None, :] >= self._cutoffs
                self.correct[mode] += hits
                if cls_correct is not None and cls_correct[i]:
                    self.top1_correct[mode] += hits
        self.n_images += len(scoremaps)
        if cls_correct is not None:
            self.n_with_class += len(scoremaps)

    def merge(self, other: BoxAccumulator) -> BoxAccumulator:
        """Add another accumulator's counts (same Δ, IoUs and modes) into this one; returns self."""
        if (other.cam_curve_interval, other.iou_thresholds, other.modes) != (
            self.cam_curve_interval,
            self.iou_thresholds,
            self.modes,
        ):
            raise ValueError("cannot merge BoxAccumulators with different settings")
        for mode in self.modes:
            self.correct[mode] += other.correct[mode]
            self.top1_correct[mode] += other.top1_correct[mode]
        self.n_images += other.n_images
        self.n_with_class += other.n_with_class
        return self

    def compute(self) -> BoxResult:
        """MaxBoxAcc per mode with curves and optimal thresholds (and Top-1 Loc if available)."""
        if self.n_images == 0:
            raise ValueError("no image was accumulated")
        return BoxResult(
            cam_curve_interval=self.cam_curve_interval,
            n_images=self.n_images,
            iou_thresholds=self.iou_thresholds,
            cam_thresholds=self.thresholds,
            modes={m: self._mode_result(m) for m in self.modes},
        )

    def _mode_result(self, mode: str) -> BoxModeResult:
        # BoxAcc = correct * 100. / count, the reference's float64 arithmetic.
        accuracy = self.correct[mode] * 100.0 / float(self.n_images)
        best = accuracy.argmax(axis=1)
        per_iou = {t: float(accuracy[i].max()) for i, t in enumerate(self.iou_thresholds)}
        value = per_iou[50] if mode == "MaxBoxAcc" else float(np.mean(list(per_iou.values())))
        top1 = top1_value = None
        if self.n_with_class == self.n_images:
            top1_accuracy = self.top1_correct[mode] * 100.0 / float(self.n_images)
            top1 = {
                t: Top1Result(
                    max_over_thresholds=float(top1_accuracy[i].max()),
                    at_gt_known_optimal_threshold=float(top1_accuracy[i, best[i]]),
                    cam_threshold_of_max=float(self.thresholds[top1_accuracy[i].argmax()]),
                )
                for i, t in enumerate(self.iou_thresholds)
            }
            maxima = [r.max_over_thresholds for r in top1.values()]
            top1_value = top1[50].max_over_thresholds if mode == "MaxBoxAcc" else float(np.mean(maxima))
        return BoxModeResult(
            value=value,
            per_iou=per_iou,
            best_cam_threshold={t: float(self.thresholds[best[i]]) for i, t in enumerate(self.iou_thresholds)},
            curves={t: accuracy[i] for i, t in enumerate(self.iou_thresholds)},
            top1=top1,
            top1_value=top1_value,
        )


@dataclass(frozen=True)
class MaskResult:
    """Result of :class:`MaskAccumulator`.

    Attributes:
        cam_curve_interval: Δ of the histogram bins.
        n_images: Number of images evaluated.
        pxap: PxAP in percent (the reference's number).
        piou: MaxPIoU in percent: the best pixel IoU over thresholds (a ``wsol`` extension).
        piou_threshold: The score threshold (``score >= t``) attaining it.
        gt_true: Foreground score histogram (float64, as the reference's).
        gt_false: Background score histogram.
        curves: Pixel curves over the thresholds.
    """

    cam_curve_interval: float
    n_images: int
    pxap: float
    piou: float
    piou_threshold: float
    gt_true: np.ndarray
    gt_false: np.ndarray
    curves: PixelCurves

    def to_dict(self) -> dict:
        """JSON-ready dict: ``PxAP``, ``PIoU`` and ``curves.PxAP_hist`` as in the reference files."""
        valid = (self.curves.tp + self.curves.fp) > 0
        return {
            "cam_curve_interval": self.cam_curve_interval,
            "n_images": self.n_images,
            "PxAP": {"value": self.pxap},
            "PIoU": {
                "value": self.piou,
                "best_cam_threshold": self.piou_threshold,
                "note": "MaxPIoU, wsol extension (not in the reference): best pixel IoU over score thresholds",
            },
            "curves": {
                "PxAP_hist": {"gt_true": self.gt_true.tolist(), "gt_false": self.gt_false.tolist()},
                "pixel_thresholds": self.curves.thresholds.tolist(),
                "precision": [float(p) if ok else None for p, ok in zip(self.curves.precision, valid, strict=True)],
                "recall": self.curves.recall.tolist(),
            },
        }


class MaskAccumulator:
    """Streaming PxAP and MaxPIoU from pooled pixel histograms (fixed memory).

    Args:
        cam_curve_interval: Δ of the histogram bins (0.001 gives the reference's 1002 bins).
    """

    def __init__(self, cam_curve_interval: float = 0.001) -> None:
        self.cam_curve_interval = float(cam_curve_interval)
        self.edges = pxap_bin_edges(self.cam_curve_interval)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        # int64 counts are exact; float32 (used by some derived code) would stop counting at 2**24.
        self.gt_true = np.zeros(len(self.edges) - 1, np.int64)
        self.gt_false = np.zeros(len(self.edges) - 1, np.int64)
        self.n_images = 0

    def update(self, scoremaps: np.ndarray, gt_masks: np.ndarray) -> None:
        """Add a batch.

        Args:
            scoremaps: ``(B, H, W)`` float maps in [0, 1].
            gt_masks: ``(B, H, W)`` uint8: 0 background, 1 foreground, 255 ignore.
        """
        scoremaps = np.asarray(scoremaps)
        if scoremaps.ndim == 2:
            scoremaps = scoremaps[None]
        check_scoremaps(scoremaps)
        gt_masks = check_gt_masks(np.asarray(gt_masks).reshape(scoremaps.shape), scoremaps.shape)
        true, false = score_histograms(scoremaps, gt_masks, self.edges)
        self.gt_true += true
        self.gt_false += false
        self.n_images += len(scoremaps)

    def merge(self, other: MaskAccumulator) -> MaskAccumulator:
        """Add another accumulator's histograms (same Δ) into this one; returns self."""
        if other.cam_curve_interval != self.cam_curve_interval:
            raise ValueError("cannot merge MaskAccumulators with different cam_curve_interval")
        self.gt_true += other.gt_true
        self.gt_false += other.gt_false
        self.n_images += other.n_images
        return self

    def compute(self) -> MaskResult:
        """PxAP, MaxPIoU and the curves."""
        curves = pixel_curves(self.gt_true, self.gt_false, self.edges)
        pxap = pxap_from_curves(curves)
        iou = np.nan_to_num(curves.iou, nan=-1.0)
        best = int(iou.argmax())
        return MaskResult(
            cam_curve_interval=self.cam_curve_interval,
            n_images=self.n_images,
            pxap=pxap,
            piou=float(iou[best] * 100),
            piou_threshold=float(curves.thresholds[best]),
            gt_true=self.gt_true.astype(np.float64),
            gt_false=self.gt_false.astype(np.float64),
            curves=curves,
        )
