"""Box metrics of the WSOL protocol: inclusive IoU, GT box rescaling, boxes from score maps.

Conventions (docs/protocol.md §2): boxes are ``x0, y0, x1, y1`` in inclusive pixel coordinates; predicted
boxes come from ``cv2.boundingRect`` as ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``, i.e. one
pixel too large on the right and bottom (the reference's ``+w`` convention, kept for parity); an empty
mask predicts the single box ``[0, 0, 0, 0]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsol.metrics._contours import next_present, traced_boxes
from wsol.metrics._sweep import contour_sweep
from wsol.metrics.scoremaps import check_scoremaps, quantize_scoremap

__all__ = [
    "best_box_ious",
    "box_iou_inclusive",
    "boxes_from_scoremap",
    "check_boxes",
    "integer_thresholds",
    "resize_gt_boxes",
]

_EMPTY_BOX = np.zeros((1, 4), np.int64)


def box_iou_inclusive(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix of two box sets with the reference's inclusive (+1) pixel convention.

    ``area = (x1 - x0 + 1) * (y1 - y0 + 1)`` and the intersection likewise, so ``[1, 2, 5, 6]`` vs
    ``[3, 1, 4, 5]`` gives 8/27 (a continuous convention would give 3/17). A non-positive union gives 0,
    as in ``calculate_multiple_iou``. The arithmetic is the reference's (integer areas, one float64
    division), so thresholding the result at ``delta / 100`` reproduces its decisions bit for bit.

    Args:
        boxes_a: ``(n, 4)`` integer boxes ``x0, y0, x1, y1``.
        boxes_b: ``(k, 4)`` integer boxes.

    Returns:
        ``(n, k)`` float64 IoUs.
    """
    a = np.asarray(boxes_a, dtype=np.int64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, dtype=np.int64).reshape(1, -1, 4)
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    return np.where(degenerate, 0.0, inter / np.where(degenerate, 1, union))


def check_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    """Validate boxes ``(k, 4)`` ``x0, y0, x1, y1``: non-negative, ``x0 <= x1``, ``y0 <= y1``.

    Args:
        boxes: Boxes to check.
        name: What to call them in the error message, e.g. ``"GT boxes of image 12.jpg"``.

    Returns:
        The boxes as an int64 ``(k, 4)`` array.
    """
    arr = np.asarray(boxes)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (k, 4), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name}: box coordinates must be integers, got {arr.tolist()}")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: box coordinates must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError(f"{name}: negative coordinates in {arr.tolist()}")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise ValueError(f"{name}: boxes must satisfy x0 <= x1 and y0 <= y1, got {arr.tolist()}")
    return arr


def resize_gt_boxes(boxes: np.ndarray, image_size: tuple[int, int], scoremap_size: tuple[int, int]) -> np.ndarray:
    """Map GT boxes from original-image pixels to score-map pixels, as ``evaluation.resize_bbox``.

    Each coordinate becomes ``int(c * new / old)`` with the float64 product first and truncation, so
    the result matches the reference (which hard-codes ``new = 224``).

    Args:
        boxes: ``(k, 4)`` boxes in original-image pixels.
        image_size: Original ``(width, height)``.
        scoremap_size: Score-map ``(width, height)``.

    Returns:
        ``(k, 4)`` int64 boxes in score-map pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    (width, height), (new_width, new_height) = image_size, scoremap_size
    scale = np.array([new_width, new_height, new_width, new_height], dtype=np.float64)
    size = np.array([width, height, width, height], dtype=np.float64)
    return (boxes * scale / size).astype(np.int64)


def integer_thresholds(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """The reference's binarisation thresholds ``int(tau * max(q))`` (float64 product, truncation)."""
    return (np.asarray(thresholds, dtype=np.float64) * float(max_value)).astype(np.int64)


def _grid_levels(q: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the value ``u`` with ``{q > T} == {q >= u}``, or 256 where the mask is empty."""
    return next_present(q)[integer_thresholds(thresholds, int(q.max())) + 1]


def boxes_from_scoremap(
    scoremap: np.ndarray, thresholds: Sequence[float] | np.ndarray, multi_contour: bool = True
) -> list[np.ndarray]:
    """Predicted boxes at every threshold, as the reference's ``compute_bboxes_from_scoremaps``.

    Traces each distinct mask once with OpenCV (``RETR_TREE``); boxes keep OpenCV's contour order.

    Args:
        scoremap: ``(H, W)`` float map in [0, 1].
        thresholds: CAM thresholds τ, e.g. :func:`wsol.metrics.cam_thresholds`.
        multi_contour: ``True`` for all contours (MaxBoxAccV2), ``False`` for the largest one (v1).

    Returns:
        One ``(n_i, 4)`` int64 array per threshold; ``[[0, 0, 0, 0]]`` where the mask is empty.
    """
    scoremap = np.asarray(scoremap)
    check_scoremaps(scoremap, ndim=2)
    q = quantize_scoremap(scoremap)
    grid = _grid_levels(q, np.asarray(thresholds, dtype=np.float64))
    per_level: dict[int, np.ndarray] = {}
    for level in np.unique(grid[grid < 256]).tolist():
        boxes, largest = traced_boxes(q, level)
        per_level[level] = boxes if multi_contour else boxes[largest : largest + 1]
    return [per_level[g].copy() if g < 256 else _EMPTY_BOX.copy() for g in grid.tolist()]


def best_box_ious(
    scoremap: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: np.ndarray,
    largest_contour: bool = True,
    all_contours: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Best IoU with any GT box at every threshold, for largest-contour (v1) and all-contour (v2) boxes.

    ``best(τ) = max over predicted boxes at τ of max over all GT boxes`` (docs/protocol.md §2.9); an empty mask
    predicts ``[0, 0, 0, 0]``. Both come from one analysis of the map. The map is assumed valid (see
    :func:`wsol.metrics.check_scoremaps`).

    Args:
        scoremap: ``(H, W)`` float map in [0, 1].
        gt_boxes: ``(k, 4)`` inclusive GT boxes in score-map coordinates, ``k >= 1``.
        thresholds: CAM thresholds τ.
        largest_contour: Compute the v1 (MaxBoxAcc) IoUs.
        all_contours: Compute the v2 (MaxBoxAccV2) IoUs.

    Returns:
        ``(iou_v1, iou_v2)``, each ``(len(thresholds),)`` float64, or None where not requested.
    """
    q = quantize_scoremap(scoremap)
    grid = _grid_levels(q, np.asarray(thresholds, dtype=np.float64))
    levels = np.unique(grid[grid < 256])
    empty = box_iou_inclusive(_EMPTY_BOX, gt_boxes).max()
    v1 = v2 = None
    if len(levels):
        v1, v2, contested = contour_sweep(q, levels, gt_boxes, all_contours, largest_contour)
        if largest_contour:
            # Levels where area bounds cannot name the largest contour are traced as the reference does.
            for i in np.flatnonzero(contested).tolist():
                traced, largest = traced_boxes(q, int(levels[i]))
                v1[i] = box_iou_inclusive(traced[largest : largest + 1], gt_boxes).max()
    where = np.minimum(np.searchsorted(levels, grid), max(len(levels) - 1, 0))
    has_mask = grid < 256

    def on_grid(per_level: np.ndarray | None, wanted: bool) -> np.ndarray | None:
        if not wanted:
            return None
        if per_level is None:  # an all-zero map: every mask is empty
            return np.full(len(grid), empty)
        return np.where(has_mask, per_level[where], empty)

    return on_grid(v1, largest_contour), on_grid(v2, all_contours)
