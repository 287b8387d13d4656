"""WSSS metrics: confusion-matrix scores of multi-class label maps and the background-threshold sweep.

Label maps use ``0`` for background, ``1..K-1`` for the object classes and ``255`` (``ignore_index``)
for pixels that are not scored. These metrics are not part of the WSOL reference; they follow the
common PASCAL VOC convention (per-class IoU over the pooled confusion matrix, background included in
the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BackgroundThresholdSweep",
    "ConfusionMatrix",
    "SegmentationResult",
    "confusion_matrix",
    "labels_from_scores",
    "segmentation_scores",
]


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = ground truth, columns = prediction; ignored pixels dropped.

    Raises:
        ValueError: On a shape mismatch or a label outside ``[0, K)`` (other than ``ignore_index``).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    keep = gt != ignore_index
    gt_kept, pred_kept = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
    for name, values in (("ground truth", gt_kept), ("prediction", pred_kept)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes}) (ignore_index {ignore_index})")
    counts = np.bincount(gt_kept * num_classes + pred_kept, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegmentationResult:
    """Scores of one confusion matrix (classes never seen nor predicted give NaN and are skipped in means).

    Attributes:
        iou: ``(K,)`` per-class ``TP / (TP + FP + FN)``.
        precision: ``(K,)`` ``TP / (TP + FP)``.
        recall: ``(K,)`` ``TP / (TP + FN)``.
        f1: ``(K,)`` harmonic mean of precision and recall.
        fpr: ``(K,)`` false-positive rate ``FP / (FP + TN)``.
        miou: Mean IoU over classes with a defined IoU, in percent.
        pixel_accuracy: Fraction of scored pixels labelled correctly, in percent.
        confusion: The ``(K, K)`` matrix.
    """

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    fpr: np.ndarray
    miou: float
    pixel_accuracy: float
    confusion: np.ndarray

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]

        def per_class(values: np.ndarray) -> dict:
            return {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, values, strict=True)}

        return {
            "mIoU": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "IoU": per_class(self.iou),
            "precision": per_class(self.precision),
            "recall": per_class(self.recall),
            "F1": per_class(self.f1),
            "FPR": per_class(self.fpr),
        }


def segmentation_scores(confusion: np.ndarray) -> SegmentationResult:
    """Per-class IoU, precision, recall, F1 and FPR and mIoU of a confusion matrix."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    tn = conf.sum() - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        fpr = fp / (fp + tn)
    total = conf.sum()
    return SegmentationResult(
        iou=iou,
        precision=precision,
        recall=recall,
        f1=f1,
        fpr=fpr,
        miou=float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total * 100) if total else float("nan"),
        confusion=np.asarray(confusion, dtype=np.int64),
    )


class ConfusionMatrix:
    """Streaming confusion matrix of label maps (fixed ``K x K`` memory).

    Args:
        num_classes: Number of classes ``K``, background included.
        ignore_index: Ground-truth value of pixels that are not scored.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add predicted and ground-truth label maps of any (equal) shape."""
        self.matrix += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (same ``K``) into this one; returns self."""
        self.matrix += other.matrix
        return self

    def compute(self) -> SegmentationResult:
        """Scores of the accumulated matrix."""
        return segmentation_scores(self.matrix)


def labels_from_scores(class_scores: np.ndarray, image_labels: np.ndarray, bg_threshold: float) -> np.ndarray:
    """Label maps from object-class scores: the best present class, or background where none beats ``t``.

    The background score is the constant ``bg_threshold``, placed first so that it wins ties, as the
    usual ``argmax(pad(cams, bg=t))`` does; classes absent from the image are not candidates.

    Args:
        class_scores: ``(B, C, H, W)`` scores of the ``C`` object classes.
        image_labels: ``(B, C)`` bool: which classes are present in each image.
        bg_threshold: Background score.

    Returns:
        ``(B, H, W)`` int64 labels in ``0..C`` (0 = background, ``c + 1`` = object class ``c``).
    """
    best, arg = _best_present(class_scores, image_labels)
    return np.where(best > bg_threshold, arg + 1, 0)


def _best_present(class_scores: np.ndarray, image_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(class_scores, dtype=np.float64)
    present = np.asarray(image_labels, dtype=bool)
    if scores.ndim != 4 or present.shape != scores.shape[:2]:
        raise ValueError(f"class_scores (B, C, H, W) {scores.shape} and image_labels (B, C) {present.shape} disagree")
    masked = np.where(present[:, :, None, None], scores, -np.inf)
    return masked.max(axis=1), masked.argmax(axis=1)


class BackgroundThresholdSweep:
    """One confusion matrix per background threshold, filled in a single pass over the pixels.

    A pixel is an object pixel at threshold ``t`` iff its best present-class score exceeds ``t``, so
    with the thresholds sorted, the thresholds at which it is background form a suffix; counting each
    pixel once at the first of them and cumulating over thresholds gives every matrix exactly.

    Args:
        num_classes: ``K`` = object classes + 1 (background).
        bg_thresholds: Background scores to sweep, e.g. ``np.arange(0.05, 0.6, 0.05)``.
        ignore_index: Ground-truth value of pixels that are not scored.
    """

    def __init__(self, num_classes: int, bg_thresholds: Sequence[float], ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.bg_thresholds = np.asarray(bg_thresholds, dtype=np.float64)
        if self.bg_thresholds.ndim != 1 or len(self.bg_thresholds) == 0:
            raise ValueError("bg_thresholds must be a non-empty 1-D sequence")
        self._order = np.argsort(self.bg_thresholds, kind="stable")
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        k = self.num_classes
        self.matrices = np.zeros((len(self.bg_thresholds), k, k), np.int64)

    def update(self, class_scores: np.ndarray, image_labels: np.ndarray, gt: np.ndarray) -> None:
        """Add a batch.

        Args:
            class_scores: ``(B, K-1, H, W)`` object-class scores (e.g. normalised CAMs).
            image_labels: ``(B, K-1)`` bool image-level labels.
            gt: ``(B, H, W)`` ground-truth label maps (0 = background, ``ignore_index`` not scored).
        """
        k, n_t = self.num_classes, len(self.bg_thresholds)
        if np.asarray(class_scores).shape[1] != k - 1:
            raise ValueError(f"expected {k - 1} object-class score maps, got {np.asarray(class_scores).shape[1]}")
        best, arg = _best_present(class_scores, image_labels)
        gt = np.asarray(gt)
        if gt.shape != best.shape:
            raise ValueError(f"ground truth shape {gt.shape} != score maps {best.shape}")
        keep = gt != self.ignore_index
        best, arg, truth = best[keep], arg[keep] + 1, gt[keep].astype(np.int64)
        if truth.size and (truth.min() < 0 or truth.max() >= k):
            raise ValueError(f"ground truth has labels outside [0, {k}) (ignore_index {self.ignore_index})")
        sorted_t = self.bg_thresholds[self._order]
        # Number of (sorted) thresholds below the pixel's best score: it is an object pixel there.
        n_object = np.searchsorted(sorted_t, best, side="left")
        object_counts = np.bincount((n_object * k + truth) * k + arg, minlength=(n_t + 1) * k * k)
        background_counts = np.bincount(n_object * k + truth, minlength=(n_t + 1) * k)
        object_counts = object_counts.reshape(n_t + 1, k, k)
        background_counts = background_counts.reshape(n_t + 1, k)
        # Object at sorted threshold j iff n_object > j; background iff n_object <= j.
        objects = object_counts[::-1].cumsum(axis=0)[::-1][1:]
        backgrounds = background_counts.cumsum(axis=0)[:-1]
        matrices = objects.copy()
        matrices[:, :, 0] += backgrounds
        self.matrices[self._order] += matrices

    def merge(self, other: BackgroundThresholdSweep) -> BackgroundThresholdSweep:
        """Add another sweep (same classes and thresholds) into this one; returns self."""
        if other.num_classes != self.num_classes or not np.array_equal(other.bg_thresholds, self.bg_thresholds):
            raise ValueError("cannot merge sweeps with different classes or thresholds")
        self.matrices += other.matrices
        return self

    def compute(self) -> tuple[list[SegmentationResult], int]:
        """Scores at every threshold and the index of the best one (highest mIoU, first on ties)."""
        results = [segmentation_scores(m) for m in self.matrices]
        mious = np.array([r.miou for r in results])
        return results, int(np.nanargmax(mious)) if np.isfinite(mious).any() else 0
