"""Pseudo boxes from a WSOL model's maps, for a PSOL-style second stage.

PSOL (Zhang et al., "Rethinking the Route Towards Weakly Supervised Object Localization", CVPR 2020,
arXiv 2002.11359) splits WSOL into class-agnostic localization and classification: a first model marks the
object on every training image with a box made from its map, and a separate localizer is trained on those
pseudo boxes. Only class labels are used, so it stays within the WSOL protocol.

Here a box is made as the protocol makes its predictions (docs/protocol.md §1, §2): the GT-class map upsampled
bicubically to the image and min-max normalised, quantised to ``q = uint8(255 s)`` and thresholded at
``q > int(τ max q)``; τ is the one that maximised BoxAcc at IoU 50 on the tuning split. The pseudo box is the
tight inclusive box of the largest 8-connected component of that mask (the components OpenCV's outer contours
trace), not the protocol's box, which is one pixel too large on the right and bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
import torch

from wsol.metrics import integer_thresholds, prepare_scoremaps, quantize_scoremap
from wsol.study.scoring import RawMaps, SplitCurves

__all__ = ["boxes_from_scoremaps", "choose_tau", "largest_component_box", "pseudo_boxes"]


def choose_tau(curves: SplitCurves, iou: int = 50) -> float:
    """The τ of ``curves``' grid that maximises BoxAcc at IoU ``iou`` (the first maximiser, as ``summarize``).

    Raises:
        ValueError: ``curves`` has no BoxAcc curve at ``iou``.
    """
    if iou not in curves.box:
        raise ValueError(f"iou must be one of the curves' IoU thresholds {sorted(curves.box)}, got {iou}")
    return float(curves.thresholds[int(np.argmax(curves.box[iou]))])


def largest_component_box(scoremap: np.ndarray, tau: float) -> np.ndarray | None:
    """Inclusive box ``[x0, y0, x1, y1]`` of the largest 8-connected component of the protocol's mask at τ.

    The mask is ``uint8(255 s) > int(τ max(uint8(255 s)))``, the one the protocol's box at τ is traced on. The
    largest component has the most pixels; on a tie, the one whose first pixel comes first in raster order.

    Args:
        scoremap: ``(H, W)`` map in [0, 1].
        tau: CAM threshold in [0, 1).

    Returns:
        An int64 ``(4,)`` box in ``scoremap``'s pixels, or None where the mask is empty (e.g. a constant map).

    Raises:
        ValueError: ``scoremap`` is not a 2-D map in [0, 1] or ``tau`` is outside [0, 1).
    """
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2 or not np.isfinite(scoremap).all() or scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError(f"scoremap must be a finite (H, W) map in [0, 1], got shape {scoremap.shape}")
    if not 0 <= tau < 1:
        raise ValueError(f"tau must lie in [0, 1), got {tau}")
    q = quantize_scoremap(scoremap)
    mask = (q > integer_thresholds(np.array([tau]), int(q.max()))[0]).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:  # label 0 is the background
        return None
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))].tolist()
    return np.array([x, y, x + w - 1, y + h - 1], np.int64)


def pseudo_boxes(raw: RawMaps, sizes: Sequence[tuple[int, int]], tau: float) -> tuple[list[np.ndarray], int]:
    """One pseudo box per image: its raw map upsampled to the image and min-max normalised, then the largest
    component's box at τ (:func:`largest_component_box`).

    The maps are upsampled to each image's own size, so the boxes are in its pixels; at the protocol's input size
    this is the map the tuning split's τ was chosen on. An image whose mask is empty (a constant map) gets the
    whole image: a map that says nothing leaves the localizer no place to prefer.

    Args:
        raw: GT-class raw maps ``(N, h, w)`` of the images (:func:`wsol.study.scoring.collect_maps`); their GT
            boxes are not read.
        sizes: ``(width, height)`` of every image.
        tau: CAM threshold.

    Returns:
        ``(boxes, n_whole)``: one ``(1, 4)`` int64 inclusive box per image, and how many fell back to the whole
        image.

    Raises:
        ValueError: ``sizes`` does not have one entry per map.
    """
    if len(sizes) != len(raw.maps):
        raise ValueError(f"sizes must have one entry per map ({len(raw.maps)}), got {len(sizes)}")
    scoremaps = (
        prepare_scoremaps(torch.from_numpy(raw.maps[i : i + 1]), (height, width))[0].numpy()
        for i, (width, height) in enumerate(sizes)
    )
    return boxes_from_scoremaps(scoremaps, sizes, tau)


def boxes_from_scoremaps(
    scoremaps: Iterable[np.ndarray], sizes: Sequence[tuple[int, int]], tau: float
) -> tuple[list[np.ndarray], int]:
    """One pseudo box per score map in [0, 1] (the largest component's box at τ, the whole image where the mask
    is empty). A map whose size differs from its image's ``(width, height)`` is resized (bilinear) to it first.

    Returns:
        ``(boxes, n_whole)`` as :func:`pseudo_boxes`.
    """
    boxes: list[np.ndarray] = []
    n_whole = 0
    for scoremap, (width, height) in zip(scoremaps, sizes, strict=True):
        scoremap = np.asarray(scoremap, dtype=np.float64)
        if scoremap.shape != (height, width):
            scoremap = np.clip(cv2.resize(scoremap, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        box = largest_component_box(scoremap, tau)
        if box is None:
            n_whole += 1
            box = np.array([0, 0, width - 1, height - 1], np.int64)
        boxes.append(box[None])
    return boxes, n_whole
