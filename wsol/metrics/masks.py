"""Pixel metrics of the WSOL protocol (docs/protocol.md §3): PxAP histograms, PxAP and the best pixel IoU.

Scores are the raw float maps (no uint8 quantisation). Bin edges are the reference's
``np.append(np.arange(0, 1, Δ), [1, 2, 3])`` in float64; bins are ``[e_i, e_{i+1})`` with the last one
closed, so a score of exactly 1.0 lands in ``[1, 2)``. Ground-truth masks use 0 = background,
1 = foreground, 255 = ignore; ignored pixels are left out of both histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsol.metrics._histogram import bin_indices, histograms

__all__ = [
    "IGNORE",
    "PixelCurves",
    "check_gt_masks",
    "pixel_curves",
    "pxap_bin_edges",
    "pxap_bin_index",
    "pxap_from_curves",
    "pxap_from_histograms",
    "score_histograms",
]

IGNORE = 255


def pxap_bin_edges(cam_curve_interval: float) -> np.ndarray:
    """The reference's float64 histogram edges ``append(arange(0, 1, Δ), [1, 2, 3])``."""
    from wsol.metrics.scoremaps import cam_thresholds

    return np.append(cam_thresholds(cam_curve_interval), [1.0, 2.0, 3.0])


def pxap_bin_index(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram bin of every score, identical to ``np.histogram(scores, bins=edges)``'s binning.

    Equivalent to ``searchsorted(edges, s, side="right") - 1`` for scores in [0, 1]: ``floor(s / Δ)``
    checked against the neighbouring edges (see :mod:`wsol.metrics._histogram`).

    Args:
        scores: Float scores in [0, 1] (any shape).
        edges: Edges from :func:`pxap_bin_edges`.

    Returns:
        int64 bin indices of the same shape, in ``0 .. len(edges) - 2``.
    """
    return bin_indices(scores, np.asarray(edges, dtype=np.float64))


def check_gt_masks(gt_masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate GT masks: the score maps' shape, values in {0, 1, 255}; returns them as uint8."""
    gt_masks = np.asarray(gt_masks)
    if gt_masks.shape != tuple(shape):
        raise ValueError(f"GT masks have shape {gt_masks.shape}, score maps {tuple(shape)}")
    if gt_masks.dtype != np.uint8:
        if gt_masks.size and (gt_masks.min() < 0 or gt_masks.max() > 255):
            raise ValueError("GT masks may only contain 0, 1 and 255")
        gt_masks = gt_masks.astype(np.uint8)
    if ((gt_masks > 1) & (gt_masks != IGNORE)).any():
        bad = np.unique(gt_masks[(gt_masks > 1) & (gt_masks != IGNORE)])
        raise ValueError(f"GT masks may only contain 0, 1 and {IGNORE}; found {bad[:5].tolist()}")
    return gt_masks


def score_histograms(scoremaps: np.ndarray, gt_masks: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background score histograms (int64 counts), ignore pixels excluded.

    Args:
        scoremaps: Float maps in [0, 1], any shape.
        gt_masks: Same shape, uint8 with 0/1/255.
        edges: Edges from :func:`pxap_bin_edges`.

    Returns:
        ``(gt_true, gt_false)``, each ``(len(edges) - 1,)`` int64.
    """
    return histograms(scoremaps, gt_masks, np.asarray(edges, dtype=np.float64))


@dataclass(frozen=True)
class PixelCurves:
    """Pixel-level curves over the thresholds ``edges`` in descending order (``score >= threshold``).

    Attributes:
        thresholds: ``(n_bins,)`` 2.0, 1.0, 1 - Δ, ..., 0.
        tp: True positives at each threshold (float64, as the reference's cumulative sums).
        fp: False positives.
        fn: False negatives.
        precision: ``tp / (tp + fp)`` (NaN where nothing is predicted).
        recall: ``tp / #foreground``.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """Pixel IoU ``tp / (tp + fp + fn)`` at each threshold."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.tp / (self.tp + self.fp + self.fn)


def pixel_curves(gt_true: np.ndarray, gt_false: np.ndarray, edges: np.ndarray) -> PixelCurves:
    """Cumulative counts and precision/recall from the histograms, as ``MaskEvaluator.compute``.

    Raises:
        ValueError: If there is no foreground pixel at all.
    """
    gt_true = np.asarray(gt_true, dtype=np.float64)
    gt_false = np.asarray(gt_false, dtype=np.float64)
    num_true = gt_true.sum()
    if num_true <= 0:
        raise ValueError("PxAP is undefined: the ground truth has no foreground pixel")
    tp = gt_true[::-1].cumsum()
    fp = gt_false[::-1].cumsum()
    fn = num_true - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return PixelCurves(edges[-2::-1], tp, fp, fn, precision, recall)


def pxap_from_histograms(gt_true: np.ndarray, gt_false: np.ndarray, edges: np.ndarray) -> float:
    """PxAP in percent from the pooled pixel histograms (see :func:`pxap_from_curves`)."""
    return pxap_from_curves(pixel_curves(gt_true, gt_false, edges))


def pxap_from_curves(curves: PixelCurves) -> float:
    """PxAP: the non-interpolated step AP, in percent.

    ``100 * sum_{j >= 1, tp_j + fp_j > 0} precision_j * (recall_j - recall_{j-1})``, the same float64
    operations in the same order as the reference, so the value matches to the last digit.
    """
    valid = (curves.tp + curves.fp)[1:] > 0
    return float((curves.precision[1:] * np.diff(curves.recall))[valid].sum() * 100)
