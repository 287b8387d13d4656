"""Contour boxes of every threshold of a quantised score map in two union-find sweeps (compiled by numba).

The reference traces ``cv2.findContours(q >= u, RETR_TREE)`` once per threshold and keeps the contours'
bounding boxes. For MaxBoxAccV2 only the *set* of contour boxes matters, and that set has a closed form
(checked against OpenCV on random masks and by the parity tests):

* one outer contour per 8-connected component of ``{q >= u}``, whose bounding rectangle is the
  component's bounding box;
* one hole contour per hole, i.e. per 4-connected component of ``{q < u}`` that does not reach the image
  border, whose bounding rectangle is the hole's bounding box grown by one pixel on every side.

Both families come from one pass each over the pixels sorted by value (a counting sort: 256 values):

* **outer**: adding pixels from 255 down, a union-find over 8-neighbours holds the components of
  ``{q >= u}`` after value ``u`` is added, each root keeping its bounding box;
* **holes**: adding pixels from 0 up, a union-find over 4-neighbours holds the components of
  ``{q < u}`` before value ``u`` is added; a component that reaches the border is dropped for good.

At every requested level the live roots are scanned, their boxes put through the reference's ``+w``
convention and inclusive IoU with the same integer arithmetic, so each IoU is bit-identical to the
traced one. The work is ``O(pixels)`` plus the number of (component, level) pairs.

Largest-contour (v1) boxes need ``cv2.contourArea``, which has no such closed form. The outer sweep also
keeps, per component, a lower bound on its contour area (the pixels whose whole 3x3 neighbourhood lies
in the set: their unit squares lie inside the polygon through pixel centres) and an upper bound (the
area ``(x1 - x0) * (y1 - y0)`` of the box of its pixel centres). Where one component's lower bound beats
every other component's upper bound it is the unique largest; the other levels are reported as
contested and traced by the caller. A hole contour never beats its own outer contour.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["contour_sweep", "warm_up"]


@njit(cache=True, nogil=True)
def _iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """Best inclusive IoU of one box with any GT box, as :func:`wsol.metrics.box_iou_inclusive`."""
    best = -np.inf
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1
        inter = max(iw, 0) * max(ih, 0)
        union = area + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
        iou = 0.0 if union <= 0 else inter / union
        if iou > best:
            best = iou
    return best


@njit(cache=True, nogil=True)
def _by_value(values: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of a ``(H, W)`` uint8 image: positions in the frame padded by one pixel (row length
    ``stride``) grouped by value, raster order within a value, and each value's start (257 entries)."""
    height, width = values.shape
    start = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            start[values[y, x] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    fill = start[:256].copy()
    order = np.empty(height * width, np.int32)
    for y in range(height):
        for x in range(width):
            v = values[y, x]
            order[fill[v]] = (y + 1) * stride + x + 1
            fill[v] += 1
    return order, start


@njit(cache=True, nogil=True)
def _reset(parent: np.ndarray, box: np.ndarray, inner: np.ndarray, height: int, width: int) -> None:
    """Every pixel its own one-pixel box, not yet added (``parent == -1``, the padding stays so)."""
    parent[:] = -1
    inner[:] = 0
    stride = width + 2
    for y in range(height):
        for x in range(width):
            p = (y + 1) * stride + x + 1
            box[p, 0] = box[p, 2] = x
            box[p, 1] = box[p, 3] = y


@njit(cache=True, nogil=True)
def _union(parent: np.ndarray, box: np.ndarray, inner: np.ndarray, a: int, b: int) -> int:
    """Merge the sets of roots ``a`` and ``b``; returns the surviving root.

    ``parent`` of a root holds ``-2 - size`` (sizes steer the union, keeping paths short).
    """
    if parent[a] > parent[b]:  # a is the smaller set
        a, b = b, a
    parent[a] += parent[b] + 2
    parent[b] = a
    box[a, 0] = min(box[a, 0], box[b, 0])
    box[a, 1] = min(box[a, 1], box[b, 1])
    box[a, 2] = max(box[a, 2], box[b, 2])
    box[a, 3] = max(box[a, 3], box[b, 3])
    inner[a] += inner[b]
    return a


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, p: int) -> int:
    """Root of ``p``'s set (path halving); roots hold ``-2 - size`` in ``parent``."""
    while parent[p] >= 0:
        up = parent[p]
        if parent[up] < 0:
            return up
        parent[p] = parent[up]
        p = parent[up]
    return p


@njit(cache=True, nogil=True, inline="always")
def _drop(live: np.ndarray, slot: np.ndarray, root: int, n_live: int) -> int:
    """Swap-remove ``root`` from the first ``n_live`` entries of ``live``; returns the new count."""
    last = live[n_live - 1]
    live[slot[root]] = last
    slot[last] = slot[root]
    slot[root] = -1
    return n_live - 1


@njit(cache=True, nogil=True, inline="always")
def _add(
    p: int,
    ring: np.ndarray,
    parent: np.ndarray,
    box: np.ndarray,
    inner: np.ndarray,
    live: np.ndarray,
    slot: np.ndarray,
    outside: np.ndarray,
    n_live: int,
) -> int:
    """Add pixel ``p`` as a live root and merge it with its added neighbours (offsets ``ring``).

    A merged set stays live unless one side was flagged ``outside`` (it reached the image border in the
    hole sweep), in which case the merged root is flagged and dropped. Returns the new live count.
    """
    parent[p] = -3  # a root of size 1
    slot[p] = n_live
    live[n_live] = p
    n_live += 1
    root = p
    for offset in ring:
        nb = p + offset
        if parent[nb] == -1 or parent[nb] == root:
            continue
        other = _find(parent, nb)
        if other == root:
            continue
        reaches = outside[root] or outside[other]
        merged = _union(parent, box, inner, root, other)
        for r in (root, other):
            if slot[r] >= 0 and (r != merged or reaches):
                n_live = _drop(live, slot, r, n_live)
        outside[merged] = reaches
        root = merged
    return n_live


@njit(cache=True, nogil=True)
def _sweep(
    q: np.ndarray, wanted: np.ndarray, gt: np.ndarray, want_v2: bool, want_v1: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    height, width = q.shape
    # Pixels live in a frame padded by one never-added pixel on every side: neighbours need no bounds checks.
    stride = width + 2
    n_padded = (height + 2) * stride
    order, start = _by_value(q, stride)
    v2 = np.full(256, -np.inf)
    v1 = np.full(256, -np.inf)
    contested = np.zeros(256, np.bool_)
    # parent: -1 not added yet, -2 - size for a root, else the parent's position.
    parent = np.empty(n_padded, np.int32)
    box = np.empty((n_padded, 4), np.int32)  # x0, y0, x1, y1 of every root's pixels
    inner = np.empty(n_padded, np.int32)  # pixels with the whole 3x3 neighbourhood in the set, per root
    live = np.empty(height * width, np.int32)  # live roots; slot[root] is the root's place in ``live``
    slot = np.empty(n_padded, np.int32)
    n_live = 0
    outside = np.zeros(n_padded, np.bool_)  # hole sweep: roots of components that reached the border
    ring8 = np.array([-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1])
    ring4 = np.array([-stride, -1, 1, stride])
    _reset(parent, box, inner, height, width)

    erode_order = order
    erode_start = start
    if want_v1:
        # Lowest value of each 3x3 neighbourhood; a pixel on the image border never has its whole
        # square inside a contour through pixel centres, so it counts from no level.
        eroded = np.zeros((height, width), np.uint8)
        for y in range(1, height - 1):
            for x in range(1, width - 1):
                low = q[y, x]
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        low = min(low, q[y + dy, x + dx])
                eroded[y, x] = low
        erode_order, erode_start = _by_value(eroded, stride)

    # Outer contours: 8-connected components of {q >= u}, u from 255 down.
    for u in range(255, 0, -1):
        for i in range(start[u], start[u + 1]):
            n_live = _add(order[i], ring8, parent, box, inner, live, slot, outside, n_live)
        if want_v1:
            for i in range(erode_start[u], erode_start[u + 1]):
                inner[_find(parent, erode_order[i])] += 1
        if not wanted[u]:
            continue
        best = -np.inf
        winner = -1
        for k in range(n_live):
            r = live[k]
            # The reference's +w convention on the right and bottom.
            x1, y1 = min(box[r, 2] + 1, width - 1), min(box[r, 3] + 1, height - 1)
            if want_v2:
                best = max(best, _iou(box[r, 0], box[r, 1], x1, y1, gt))
            if want_v1 and (winner < 0 or inner[r] > inner[winner]):
                winner = r
        v2[u] = best
        if want_v1:
            x1, y1 = min(box[winner, 2] + 1, width - 1), min(box[winner, 3] + 1, height - 1)
            v1[u] = _iou(box[winner, 0], box[winner, 1], x1, y1, gt)
            for k in range(n_live):
                r = live[k]
                if r != winner and (box[r, 2] - box[r, 0]) * (box[r, 3] - box[r, 1]) >= inner[winner]:
                    contested[u] = True
                    break
    if not want_v2:
        return v1, v2, contested

    # Hole contours: 4-connected components of {q < u} off the border, u from 1 up (value u - 1 added).
    # A component that reaches the border never becomes a hole. A pixel added on the border or next to such
    # a pixel is marked ``parent == -2`` and stays out of the union-find; a component that reaches one later
    # gets its root flagged in ``outside``. Only the roots of the other components are live.
    _reset(parent, box, inner, height, width)
    on_border = np.zeros(n_padded, np.bool_)
    for y in range(height):
        on_border[(y + 1) * stride + 1] = on_border[(y + 1) * stride + width] = True
    for x in range(width):
        on_border[stride + x + 1] = on_border[height * stride + x + 1] = True
    n_live = 0
    for u in range(1, 256):
        for i in range(start[u - 1], start[u]):
            p = order[i]
            out = on_border[p]
            for offset in ring4:
                out = out or parent[p + offset] == -2
            if out:
                # p is outside, and so is every hole-candidate component it touches.
                parent[p] = -2
                for offset in ring4:
                    nb = p + offset
                    if parent[nb] == -1 or parent[nb] == -2:
                        continue
                    other = _find(parent, nb)
                    if slot[other] >= 0:
                        n_live = _drop(live, slot, other, n_live)
                    outside[other] = True
                continue
            n_live = _add(p, ring4, parent, box, inner, live, slot, outside, n_live)
        if not wanted[u]:
            continue
        best = v2[u]
        for k in range(n_live):
            r = live[k]
            # A hole contour runs through the pixels around the hole: its box grown by one pixel, then +w.
            x1, y1 = min(box[r, 2] + 2, width - 1), min(box[r, 3] + 2, height - 1)
            best = max(best, _iou(box[r, 0] - 1, box[r, 1] - 1, x1, y1, gt))
        v2[u] = best
    return v1, v2, contested


def contour_sweep(
    q: np.ndarray, levels: np.ndarray, gt_boxes: np.ndarray, all_contours: bool = True, largest_contour: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best IoU with the GT boxes of the contour boxes of ``{q >= u}`` for each ``u`` in ``levels``.

    Args:
        q: ``(H, W)`` uint8 quantised score map.
        levels: Distinct levels ``1..255`` to report.
        gt_boxes: ``(k, 4)`` inclusive GT boxes, ``k >= 1``.
        all_contours: Report the best IoU over every contour box (MaxBoxAccV2).
        largest_contour: Report the IoU of the largest contour's box (MaxBoxAcc) where bounds settle it.

    Returns:
        ``(v1, v2, contested)``, each ``(len(levels),)``: the largest contour's IoU (valid where not
        contested), the best IoU over all contours, and whether the largest contour must be traced.
    """
    wanted = np.zeros(256, np.bool_)
    wanted[levels] = True
    v1, v2, contested = _sweep(
        np.ascontiguousarray(q, dtype=np.uint8),
        wanted,
        np.ascontiguousarray(gt_boxes, dtype=np.int64),
        all_contours,
        largest_contour,
    )
    return v1[levels], v2[levels], contested[levels]


def warm_up() -> None:
    """Compile the sweep (or load it from numba's cache) now, e.g. before forking worker processes."""
    contour_sweep(np.ones((2, 2), np.uint8), np.array([1]), np.zeros((1, 4), np.int64))
