"""Contours traced exactly as the reference does, one ``cv2.findContours`` per distinct mask.

The reference thresholds ``q = uint8(255 s)`` at ``q > T`` for every τ of its grid. ``{q > T}`` only
changes when ``T`` crosses a value present in ``q``, so the distinct masks are the superlevel sets
``{q >= u}`` of the values ``u`` present in the map, and each is traced once, cropped to its bounding
box (OpenCV pads the image with zeros itself and the raster order is kept, so the contours are the
same; the parity tests check this).
"""

from __future__ import annotations

import cv2
import numpy as np

_VALUES = np.arange(256)


def next_present(q: np.ndarray) -> np.ndarray:
    """``out[v]`` = the smallest value ``>= v`` present in ``q``, or 256; length 257."""
    present = np.bincount(q.ravel(), minlength=256) > 0
    idx = np.where(present, _VALUES, 256)
    return np.append(np.minimum.accumulate(idx[::-1])[::-1], 256)


def plus_w_boxes(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Predicted boxes from inclusive pixel extents, with the reference's ``+w`` convention.

    ``cv2.boundingRect`` gives ``(x, y, w, h)`` and the reference keeps ``(x, y, min(x + w, W - 1),
    min(y + h, H - 1))``: one pixel too large on the right and bottom unless clipped at the border.
    """
    height, width = shape
    return np.stack([x0, y0, np.minimum(x1 + 1, width - 1), np.minimum(y1 + 1, height - 1)], axis=-1)


def trace_level(q: np.ndarray, level: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """``findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` of the non-empty mask ``{q >= level}``."""
    rows = np.flatnonzero(q.max(axis=1) >= level)
    cols = np.flatnonzero(q.max(axis=0) >= level)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    mask = (q[y0 : y1 + 1, x0 : x1 + 1] >= level).view(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))[-2:]
    return contours, hierarchy.reshape(-1, 4)


def contour_boxes(contours: tuple[np.ndarray, ...], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference boxes and doubled ``cv2.contourArea`` of a non-empty list of contours.

    Boxes follow :func:`plus_w_boxes`. ``cv2.contourArea`` is the shoelace formula over the polygon; with
    integer vertices its double-precision sum is exact, so doubled integer areas reproduce its order and ties.
    """
    lengths = np.fromiter((len(c) for c in contours), np.int64, len(contours))
    starts = np.cumsum(lengths) - lengths
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    x, y = points[:, 0], points[:, 1]
    boxes = plus_w_boxes(
        np.minimum.reduceat(x, starts),
        np.minimum.reduceat(y, starts),
        np.maximum.reduceat(x, starts),
        np.maximum.reduceat(y, starts),
        shape,
    )
    prev = np.arange(len(points)) - 1
    prev[starts] = starts + lengths - 1
    area2 = np.abs(np.add.reduceat(x[prev] * y - y[prev] * x, starts))
    return boxes, area2


def traced_boxes(q: np.ndarray, level: int) -> tuple[np.ndarray, int]:
    """All contour boxes of ``{q >= level}`` in OpenCV's order, and the index of the largest contour.

    The largest is the first contour attaining the maximum ``cv2.contourArea``, as Python's ``max``
    over the contour list picks it in the reference.
    """
    contours, _ = trace_level(q, level)
    boxes, area2 = contour_boxes(contours, q.shape)
    return boxes, int(np.argmax(area2))
