"""Component trees of a quantised score map: the contour boxes of every threshold without tracing them.

The reference traces ``cv2.findContours(q > T, RETR_TREE)`` once per threshold. For MaxBoxAccV2 only
the *set* of contour boxes matters, and that set has a closed form (checked against OpenCV on random
masks and by the parity tests):

* one outer contour per 8-connected component of ``{q >= u}``, whose bounding rectangle is the
  component's bounding box;
* one hole contour per hole, i.e. per 4-connected component of ``{q < u}`` that does not reach the image
  border, whose bounding rectangle is the hole's bounding box grown by one pixel on every side.

Both families, for all 255 levels at once, come from two component trees (8-connected superlevel sets
of ``q`` and 4-connected superlevel sets of ``255 - q``). A tree is built from *regions*: every pixel
is linked to a neighbour that is at least as high (the highest one, or for a pixel on a flat top the
plateau's way out), so that following links leads to a regional maximum. A region (all pixels
leading to one regional maximum) intersected with ``{v >= t}`` is connected, hence the components of
``{v >= t}`` are unions of regions joined where two neighbouring pixels of different regions are both
``>= t``. Merging regions in decreasing order of that pass value (Kruskal) gives the tree, and the
bounding box of every node at every level comes from per-region, per-value extremes.

Largest-contour (v1) boxes need ``cv2.contourArea``, which has no such closed form; see
``wsol.metrics.boxes._largest_contour_boxes`` for how the levels that bounds cannot settle are traced.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

_KERNELS = {8: np.ones((3, 3), np.uint8), 4: np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)}
# Per-region tables cost O(regions x 256); beyond this many regional maxima (only large noise maps get
# there) the caller traces the levels instead.
MAX_REGIONS = 1 << 14


class TooManyRegions(Exception):
    """The map has more than ``MAX_REGIONS`` regional maxima."""


class Tree(NamedTuple):
    """A component tree of ``{v >= t}`` over regions, with per-region tables.

    Attributes:
        lo: ``(n,)`` lowest threshold at which the node is a component of its own.
        hi: ``(n,)`` highest threshold at which it is (its peak for a leaf, its merge level otherwise);
            a node is a component of ``{v >= t}`` exactly for ``lo <= t <= hi``.
        start: ``(n,)`` first position of the node's regions in ``order``.
        stop: ``(n,)`` one past its last position; a node's regions are ``order[start:stop]``.
        order: ``(R,)`` regions in an order where every node's regions are contiguous.
        region_bbox: ``(4, R, 256)`` ``x0, y0, x1, y1`` of each region's pixels with ``v >= t``.
        region_interior: ``(R, 256)`` each region's pixels whose 3x3 neighbourhood is ``>= t``
            (``(R, 0)`` unless requested).
        border_max: ``(n,)`` highest ``v`` on the image border within the node, -1 if none.
    """

    lo: np.ndarray
    hi: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    order: np.ndarray
    region_bbox: np.ndarray
    region_interior: np.ndarray
    border_max: np.ndarray


@lru_cache(maxsize=8)
def _layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel 3x3 class, flat index, x, y, border pixel indices and the class-pair → offset table.

    In any 3x3 window each class ``(y % 3) * 3 + x % 3`` occurs exactly once, so a dilation of
    ``value * 16 + class`` tells both the highest neighbour's value and which neighbour it is.
    """
    index = np.arange(height * width)
    y, x = np.divmod(index, width)
    cls = ((y % 3) * 3 + x % 3).astype(np.uint16)
    table = np.zeros(256, np.int64)
    for own in range(9):
        for other in range(9):
            dy = (other // 3 - own // 3 + 1) % 3 - 1
            dx = (other % 3 - own % 3 + 1) % 3 - 1
            table[own << 4 | other] = dy * width + dx
    border = np.flatnonzero((x == 0) | (x == width - 1) | (y == 0) | (y == height - 1))
    return cls, index, x, y, border, table


def _regions(v: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Region of every pixel and the peak value of every region.

    A pixel with a strictly higher neighbour links to its highest neighbour. Pixels without one are
    equal to each other when neighbours, so they form plateaus (connected components); a plateau that
    touches an equal pixel having a higher neighbour leaves through that pixel, any other plateau is a
    regional maximum and becomes a region's root. Pointer jumping resolves every pixel's root.

    Returns:
        ``label`` ``(H*W,)`` int64 in ``0..R``, where ``R`` (one past the last region) marks ``v == 0``,
        and ``peak`` ``(R,)``.
    """
    height, width = v.shape
    n_pixels = height * width
    kernel = _KERNELS[connectivity]
    cls, index, _, _, _, table = _layout(height, width)
    flat = v.ravel()
    key = (flat.astype(np.uint16) << 4) | cls
    top = cv2.dilate(key.reshape(v.shape), kernel).ravel()
    parent = index + np.take(table, (cls << 4) | (top & 15))  # the highest neighbour
    parent[flat == 0] = n_pixels  # virtual node n_pixels: "no region"
    weak = (top >> 4) == flat  # no strictly higher neighbour
    weak &= flat > 0
    n_plateaus, plateau = cv2.connectedComponents(weak.view(np.uint8).reshape(v.shape), connectivity=connectivity)
    # The highest non-flat-top neighbour of each flat-top pixel: an exit when it has the same value.
    out = cv2.dilate((key * ~weak).reshape(v.shape), kernel).ravel()
    weak_at = np.flatnonzero(weak)
    weak_plateau = plateau.ravel()[weak_at]
    out_weak = out[weak_at]
    exits = (out_weak >> 4) == flat[weak_at]
    plateau_exit = np.full(n_plateaus, -1, np.int64)
    exit_at = weak_at[exits]
    plateau_exit[weak_plateau[exits]] = exit_at + np.take(table, (cls[exit_at] << 4) | (out_weak[exits] & 15))
    # Virtual nodes n_pixels + j stand for plateau j (plateau 0, "not a flat top", for no region).
    exit_of_weak = plateau_exit[weak_plateau]
    parent[weak_at] = np.where(exit_of_weak >= 0, exit_of_weak, n_pixels + weak_plateau)
    parent = np.concatenate([parent, n_pixels + np.arange(n_plateaus)])
    jumped = np.empty_like(parent)
    for _ in range(3):  # ascents are rarely shorter than 8 steps: no need to check for the end yet
        np.take(parent, parent, out=jumped)
        parent, jumped = jumped, parent
    while True:  # about log2(longest ascent) rounds in all
        np.take(parent, parent, out=jumped)
        if np.array_equal(jumped, parent):
            break
        parent, jumped = jumped, parent
    is_root = plateau_exit < 0
    is_root[0] = False
    n_regions = int(is_root.sum())
    region_of_plateau = np.where(is_root, np.cumsum(is_root) - 1, n_regions)
    label = np.take(region_of_plateau, parent[:n_pixels] - n_pixels)
    peak = np.zeros(n_regions + 1, np.int64)
    roots = weak_at[is_root[weak_plateau]]
    peak[label[roots]] = flat[roots]
    return label, peak[:n_regions]


def _edges(label: np.ndarray, v: np.ndarray, connectivity: int, n_regions: int) -> np.ndarray:
    """``(m, 3)`` edges ``(pass, a, b)`` between adjacent regions, pass = best ``min(v_a, v_b)``.

    Sorted by decreasing pass. Only pixels next to another region are looked at; they are found with
    one dilation and one erosion of the label image (labels < 2**24 are exact in float32).
    """
    height, width = v.shape
    lab = label.reshape(v.shape).astype(np.float32)
    kernel = _KERNELS[connectivity]
    at = np.flatnonzero(cv2.dilate(lab, kernel) != cv2.erode(lab, kernel))
    _, _, x, y, _, _ = _layout(height, width)
    steps = np.array([(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else []))
    # Every boundary pixel with each forward neighbour at once.
    a = np.repeat(at, len(steps))
    dy, dx = np.tile(steps[:, 0], len(at)), np.tile(steps[:, 1], len(at))
    nx = x[a] + dx
    ok = (y[a] + dy < height) & (nx >= 0) & (nx < width)
    a = a[ok]
    b = a + (dy * width + dx)[ok]
    la, lb = label[a], label[b]
    diff = la != lb
    a, b, la, lb = a[diff], b[diff], la[diff], lb[diff]
    flat = v.ravel()
    key = np.minimum(la, lb) * (n_regions + 1) + np.maximum(la, lb)
    value = np.minimum(flat[a], flat[b])
    real = key % (n_regions + 1) < n_regions  # the larger id is the "no region" marker otherwise
    key, value = key[real], value[real]
    if (n_regions + 1) ** 2 <= 1 << 22:
        best = np.zeros((n_regions + 1) ** 2, np.uint8)  # passes are >= 1, so 0 means "not adjacent"
        np.maximum.at(best, key, value)
        key = np.flatnonzero(best)
        value = best[key]
    else:  # many regions (noise): sort instead of a dense table
        combo = np.unique(key * 256 + value)
        key, value = np.divmod(combo, 256)
        last = np.append(key[1:] != key[:-1], True)  # the highest pass of each pair comes last
        key, value = key[last], value[last]
    a, b = np.divmod(key, n_regions + 1)
    edges = np.stack([value.astype(np.int64), a, b], axis=1)
    return edges[np.argsort(-edges[:, 0], kind="stable")]


def _region_bboxes(label: np.ndarray, v: np.ndarray, n_regions: int) -> np.ndarray:
    """``(4, R, 256)``: ``x0, y0, x1, y1`` of each region's pixels with ``v >= t``, for every ``t``.

    From each region's column and row maxima: the first column of ``R_k ∩ {v >= t}`` is the number of
    leading columns whose running maximum is below ``t``, a cumulative histogram of running maxima.
    """
    height, width = v.shape
    _, _, x, y, _, _ = _layout(height, width)
    flat = v.ravel()
    offsets = (np.arange(n_regions + 1) * 256)[:, None]
    zero = np.zeros((n_regions + 1, 1), np.int64)
    out = []
    for coord, length in ((x, width), (y, height)):
        profile = np.zeros((n_regions + 1, length), np.uint8)
        np.maximum.at(profile.ravel(), label * length + coord, flat)
        ends = []
        for running in (np.maximum.accumulate(profile, axis=1), np.maximum.accumulate(profile[:, ::-1], axis=1)):
            hist = np.bincount((running + offsets).ravel(), minlength=(n_regions + 1) * 256)
            ends.append(np.concatenate([zero, hist.reshape(-1, 256).cumsum(axis=1)[:, :-1]], axis=1))
        out.append((ends[0], length - 1 - ends[1]))
    (x0, x1), (y0, y1) = out
    return np.stack([x0, y0, x1, y1])[:, :n_regions]


def build_tree(v: np.ndarray, connectivity: int, with_interior: bool = False) -> Tree:
    """Component tree of the superlevel sets ``{v >= t}``, ``t = 1..255``, of a uint8 image.

    Args:
        v: ``(H, W)`` uint8 image; pixels with ``v == 0`` belong to no level.
        connectivity: 8 for foreground components, 4 for background (hole) components.
        with_interior: Also count, per region and threshold, pixels whose 3x3 neighbourhood is in the set.
    """
    height, width = v.shape
    label, peak = _regions(v, connectivity)
    n_regions = len(peak)
    if n_regions > MAX_REGIONS:
        raise TooManyRegions(n_regions)
    flat = v.ravel()
    border = _layout(height, width)[4]
    region_border = np.full(n_regions + 1, -1, np.int64)
    np.maximum.at(region_border, label[border], flat[border].astype(np.int64))

    # Kruskal over regions (union by size, path halving); merge j creates node n_regions + j.
    uf, size = list(range(n_regions)), [1] * n_regions
    node_of = list(range(n_regions))  # tree node of each union-find root
    merges = []
    for level, a, b in _edges(label, v, connectivity, n_regions).tolist():
        while uf[a] != a:
            uf[a] = a = uf[uf[a]]
        while uf[b] != b:
            uf[b] = b = uf[uf[b]]
        if a == b:
            continue
        if size[a] < size[b]:
            a, b = b, a
        uf[b] = a
        size[a] += size[b]
        merges.append((level, node_of[a], node_of[b]))
        node_of[a] = n_regions + len(merges) - 1
    # Leaves in linked runs so that every node's regions form one contiguous range of the final order.
    head, tail, nxt = list(range(n_regions)), list(range(n_regions)), [-1] * n_regions
    for _, na, nb in merges:
        nxt[tail[na]] = head[nb]
        head.append(head[na])
        tail.append(tail[nb])
    order = []
    for root in {node_of[r] for r in range(n_regions) if uf[r] == r}:
        leaf = head[root]
        while leaf != -1:
            order.append(leaf)
            leaf = nxt[leaf]
    order_arr = np.asarray(order, np.int64)
    position = np.empty(n_regions, np.int64)
    position[order_arr] = np.arange(n_regions)
    merge_table = np.asarray(merges, np.int64).reshape(-1, 3)
    n_nodes = n_regions + len(merges)
    start = position[np.asarray(head, np.int64)] if n_regions else np.zeros(0, np.int64)
    stop = np.concatenate([start[:n_regions] + 1, position[np.asarray(tail[n_regions:], np.int64)] + 1])
    merged = np.zeros(n_nodes, np.int64)
    merged[merge_table[:, 1]] = merge_table[:, 0]
    merged[merge_table[:, 2]] = merge_table[:, 0]
    hi = np.concatenate([peak, merge_table[:, 0]])
    # Highest border value of every node: a maximum over its contiguous run of regions.
    border_max = hi.copy()
    if n_nodes:
        runs = np.append(region_border[:n_regions][order_arr], -1)
        border_max = np.maximum.reduceat(runs, np.stack([start, stop], axis=1).ravel())[::2]

    region_bbox = _region_bboxes(label, v, n_regions)
    region_interior = np.zeros((n_regions, 0), np.int64)
    if with_interior:
        inner = cv2.erode(v, _KERNELS[8])
        # A pixel on the image border never has its whole square inside a contour through pixel centres.
        inner[0, :] = inner[-1, :] = 0
        inner[:, 0] = inner[:, -1] = 0
        counts = np.bincount(label * 256 + inner.ravel(), minlength=(n_regions + 1) * 256)
        region_interior = counts.reshape(-1, 256)[:n_regions, ::-1].cumsum(axis=1)[:, ::-1]
    return Tree(
        lo=np.where(merged > 0, merged + 1, 1),
        hi=hi,
        start=start,
        stop=stop,
        order=order_arr,
        region_bbox=region_bbox,
        region_interior=region_interior,
        border_max=border_max,
    )


class Components(NamedTuple):
    """Every (node, level) pair where a tree node is a component of ``{v >= levels[level]}``.

    Attributes:
        node: ``(P,)`` tree node.
        level: ``(P,)`` index into the requested levels.
        bbox: ``(4, P)`` ``x0, y0, x1, y1`` of the component.
        interior: ``(P,)`` its pixels with the whole 3x3 neighbourhood in the set (0 if not built).
    """

    node: np.ndarray
    level: np.ndarray
    bbox: np.ndarray
    interior: np.ndarray


def components_at(tree: Tree, levels: np.ndarray) -> Components:
    """The components of ``{v >= t}`` for each ``t`` in ``levels`` (sorted), with their boxes.

    At a given level the active nodes own disjoint runs of ``tree.order``, so laying the region tables
    out as ``(level, position)`` turns every component's box into one segment of a single ``reduceat``.
    """
    first = np.searchsorted(levels, tree.lo, side="left")
    last = np.searchsorted(levels, tree.hi, side="right")
    count = np.maximum(last - first, 0)
    node = np.repeat(np.arange(len(count)), count)
    level = np.repeat(first, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    n_regions = len(tree.order)
    seg_start = level * n_regions + tree.start[node]
    perm = np.argsort(seg_start, kind="stable")
    bounds = np.stack([seg_start[perm], (level * n_regions + tree.stop[node])[perm]], axis=1).ravel()
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))

    def reduce(table: np.ndarray, ufunc) -> np.ndarray:
        laid_out = np.append(table[tree.order][:, levels].T.ravel(), 0)
        return ufunc.reduceat(laid_out, bounds)[::2][inverse]

    if len(node) == 0:
        return Components(node, level, np.zeros((4, 0), np.int64), np.zeros(0, np.int64))
    bbox = np.stack(
        [
            reduce(tree.region_bbox[0], np.minimum),
            reduce(tree.region_bbox[1], np.minimum),
            reduce(tree.region_bbox[2], np.maximum),
            reduce(tree.region_bbox[3], np.maximum),
        ]
    )
    interior = reduce(tree.region_interior, np.add) if tree.region_interior.shape[1] else np.zeros_like(node)
    return Components(node, level, bbox, interior)
