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
        region_bbox: ``(4, 256 * (R + 1))``: at ``[:, t * (R + 1) + p]``, ``-x0, -y0, x1, y1`` of the
            pixels with ``v >= t`` of the region at position ``p < R`` of ``order`` (negated minima, so that
            all four reduce by maximum); ``p = R`` pads every level with an empty box.
        region_interior: ``(256 * (R + 1),)`` likewise, the pixels whose 3x3 neighbourhood is ``>= t``
            (empty unless requested).
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


class _Layout(NamedTuple):
    """Per-image-size constants (see :func:`_layout`)."""

    cls: np.ndarray  # (H*W,) uint16 3x3 class of every pixel
    cls4: np.ndarray  # (H*W,) uint16 class << 4
    index: np.ndarray  # (H*W,) int32 flat index
    x: np.ndarray  # (H*W,) intp column
    y_after_x: np.ndarray  # (H*W,) intp W + row: the row profiles follow the W column profiles
    border: np.ndarray  # border pixel indices
    table: np.ndarray  # (256,) int32 class-pair -> flat offset
    group: np.ndarray  # (2 * (W + H), 1) intp 256 * which of the four running-maximum profiles a row is


@lru_cache(maxsize=8)
def _layout(height: int, width: int) -> _Layout:
    """Per-pixel 3x3 class, flat index, x, y, border pixel indices and the class-pair → offset table.

    In any 3x3 window each class ``(y % 3) * 3 + x % 3`` occurs exactly once, so a dilation of
    ``value * 16 + class`` tells both the highest neighbour's value and which neighbour it is.
    """
    index = np.arange(height * width)
    y, x = np.divmod(index, width)
    cls = ((y % 3) * 3 + x % 3).astype(np.uint16)
    table = np.zeros(256, np.int32)
    for own in range(9):
        for other in range(9):
            dy = (other // 3 - own // 3 + 1) % 3 - 1
            dx = (other % 3 - own % 3 + 1) % 3 - 1
            table[own << 4 | other] = dy * width + dx
    border = np.flatnonzero((x == 0) | (x == width - 1) | (y == 0) | (y == height - 1))
    group = np.repeat(np.arange(4) * 256, [width, height, width, height])[:, None]
    return _Layout(cls, cls << 4, index.astype(np.int32), x, y + width, border, table, group)


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
    layout = _layout(height, width)
    flat = v.ravel()
    key = flat.astype(np.uint16)
    key <<= 4
    key |= layout.cls
    top = cv2.dilate(key.reshape(v.shape), kernel).ravel()
    pick = top & 15
    pick |= layout.cls4
    top >>= 4
    weak = top == flat  # no strictly higher neighbour
    zero = flat == 0
    weak[zero] = False
    n_plateaus, plateau = cv2.connectedComponents(weak.view(np.uint8).reshape(v.shape), connectivity=connectivity)
    # Virtual nodes n_pixels + j stand for plateau j (plateau 0, "not a flat top", for no region).
    parent = np.empty(n_pixels + n_plateaus, np.int32)
    pixel_parent = parent[:n_pixels]
    np.take(layout.table, pick, out=pixel_parent)
    pixel_parent += layout.index  # the highest neighbour
    pixel_parent[zero] = n_pixels  # virtual node n_pixels: "no region"
    parent[n_pixels:] = np.arange(n_pixels, n_pixels + n_plateaus, dtype=np.int32)
    # The highest non-flat-top neighbour of each flat-top pixel: an exit when it has the same value.
    np.multiply(key, ~weak, out=key)
    out = cv2.dilate(key.reshape(v.shape), kernel).ravel()
    weak_at = np.flatnonzero(weak)
    weak_plateau = plateau.ravel()[weak_at]
    out_weak = out[weak_at]
    exits = (out_weak >> 4) == flat[weak_at]
    plateau_exit = np.full(n_plateaus, -1, np.int32)
    exit_at = weak_at[exits]
    plateau_exit[weak_plateau[exits]] = exit_at + np.take(layout.table, layout.cls4[exit_at] | (out_weak[exits] & 15))
    exit_of_weak = plateau_exit[weak_plateau]
    parent[weak_at] = np.where(exit_of_weak >= 0, exit_of_weak, n_pixels + weak_plateau)
    jumped = np.empty_like(parent)
    for _ in range(5):  # ascents are rarely shorter than 32 steps: no need to check for the end yet
        np.take(parent, parent, out=jumped)
        parent, jumped = jumped, parent
    # The last rounds (about log2(longest ascent) in all) only on the pixels not yet at their root.
    np.take(parent, parent, out=jumped)
    live = np.flatnonzero(jumped != parent)
    parent = jumped
    while len(live):
        up = parent[live]
        up_up = parent[up]
        parent[live] = up_up
        live = live[parent[up_up] != up_up]
    is_root = plateau_exit < 0
    is_root[0] = False
    n_regions = int(is_root.sum())
    region_of_plateau = np.where(is_root, np.cumsum(is_root) - 1, n_regions)
    root_plateau = parent[:n_pixels]
    root_plateau -= n_pixels
    label = np.take(region_of_plateau, root_plateau)
    peak = np.zeros(n_regions + 1, np.int64)
    roots = weak_at[is_root[weak_plateau]]
    peak[label[roots]] = flat[roots]
    return label, peak[:n_regions]


def _edges(label: np.ndarray, v: np.ndarray, connectivity: int, n_regions: int) -> np.ndarray:
    """``(m, 3)`` edges ``(pass, a, b)`` between adjacent regions, pass = best ``min(v_a, v_b)``.

    Sorted by decreasing pass. Each neighbour direction compares the label image with itself shifted
    (labels <= ``MAX_REGIONS`` fit in uint16); only the pixel pairs across two regions are gathered.
    """
    height, width = v.shape
    lab = label.astype(np.uint16).reshape(v.shape)
    flat = v.ravel()
    # (slice of the first pixel, slice of its neighbour, neighbour offset, whether rows are one short)
    directions = [
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None)), 1, True),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None)), width, False),
    ]
    if connectivity == 8:
        directions += [
            ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None)), width + 1, True),
            ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)), width - 1, True),
        ]
    firsts = []
    for first, second, offset, short in directions:
        at = np.flatnonzero(lab[first] != lab[second])
        if short:  # index in a (rows, width - 1) window back to the image
            at += at // (width - 1)
            if offset == width - 1:
                at += 1
        firsts.append((at, at + offset))
    a = np.concatenate([f for f, _ in firsts])
    b = np.concatenate([n for _, n in firsts])
    la, lb = label[a], label[b]
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


def _running_max(a: np.ndarray, reverse: bool = False) -> np.ndarray:
    """``out[:, i] = max(a[:, :i + 1])`` (or ``max(a[:, i:])``), by doubling: ``ufunc.accumulate`` is slow
    across rows. ``a`` is overwritten; the result may be ``a`` or a new array."""
    other = np.empty_like(a)
    shift = 1
    while shift < a.shape[1]:
        if reverse:
            np.maximum(a[:, :-shift], a[:, shift:], out=other[:, :-shift])
            other[:, -shift:] = a[:, -shift:]
        else:
            np.maximum(a[:, shift:], a[:, :-shift], out=other[:, shift:])
            other[:, :shift] = a[:, :shift]
        a, other = other, a
        shift *= 2
    return a


def _region_bboxes(label: np.ndarray, v: np.ndarray, n_regions: int, order: np.ndarray) -> np.ndarray:
    """``(4, 256 * (R + 1))``: ``-x0, -y0, x1, y1`` of region ``order[p]``'s pixels with ``v >= t`` at
    ``[:, t * (R + 1) + p]``; ``p = R`` (the pixels with ``v == 0``) is an empty box at every ``t > 0``.

    From each region's column and row maxima: the first column of ``R_k ∩ {v >= t}`` is the first
    column where the running maximum from the left reaches ``t``, i.e. the first *record* (a column
    where the running maximum rises) of value ``>= t``; so every record writes its column at its
    value and a running minimum over decreasing ``t`` spreads it down to the previous record. Above
    a region's peak its box is empty (``x0 = W``, ``x1 = -1``), neutral for min / max.
    """
    height, width = v.shape
    layout = _layout(height, width)
    flat = v.ravel()
    m = n_regions + 1
    position = np.empty(m, np.intp)  # column of each region's entries: its position in ``order``
    position[order] = np.arange(n_regions)
    position[n_regions] = n_regions
    # Rows 0..W-1: highest value of each region in each column; rows W..W+H-1: in each row.
    profile = np.zeros((width + height, m), np.uint8)
    np.maximum.at(profile.ravel(), layout.x * m + label, flat)
    np.maximum.at(profile.ravel(), layout.y_after_x * m + label, flat)
    dtype = np.int16 if max(height, width) < 1 << 15 else np.int32
    table = np.empty((4, 256, m), dtype)
    for k, empty in enumerate((-width, -height, -1, -1)):
        table[k].fill(empty)
    flat_table = table.ravel()
    # Running maxima from the left and the right (columns), from the top and the bottom (rows).
    for k, part, length in ((0, profile[:width], width), (1, profile[width:], height)):
        running = _running_max(np.stack([part, part[::-1]]))
        rises = np.empty(running.shape, bool)
        np.greater(running[:, 0], 0, out=rises[:, 0])
        np.greater(running[:, 1:], running[:, :-1], out=rises[:, 1:])
        at = np.flatnonzero(rises)
        side, coord = np.divmod(at // m, length)
        # Negated first row / column from the left and top, last one from the right and bottom.
        coord = np.where(side == 0, -coord, (length - 1) - coord)
        flat_table[((k + 2 * side) * 256 + running.ravel()[at].astype(np.intp)) * m + position[at % m]] = coord
    # Spread every record down to the level above the previous record (all four kept as maxima).
    table = _running_max(table, reverse=True)
    table[:, 0] = np.array([0, 0, width - 1, height - 1], dtype)[:, None]
    return table.reshape(4, -1)


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
    border = _layout(height, width).border
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

    region_bbox = _region_bboxes(label, v, n_regions, order_arr)
    region_interior = np.zeros(0, np.int64)
    if with_interior:
        inner = cv2.erode(v, _KERNELS[8])
        # A pixel on the image border never has its whole square inside a contour through pixel centres.
        inner[0, :] = inner[-1, :] = 0
        inner[:, 0] = inner[:, -1] = 0
        index = inner.ravel().astype(np.intp)
        index *= n_regions + 1
        index += label
        counts = np.bincount(index, minlength=256 * (n_regions + 1)).reshape(256, -1)
        region_interior = np.take(counts[::-1].cumsum(axis=0)[::-1], np.append(order_arr, n_regions), axis=1).ravel()
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

    At a given level the active nodes own disjoint runs of ``tree.order``, and the region tables are laid
    out as ``(level, position)``, so every component's box is one segment of a single ``reduceat``.
    """
    first = np.searchsorted(levels, tree.lo, side="left")
    last = np.searchsorted(levels, tree.hi, side="right")
    count = np.maximum(last - first, 0)
    node = np.repeat(np.arange(len(count)), count)
    level = np.repeat(first, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    if len(node) == 0:
        return Components(node, level, np.zeros((4, 0), np.int64), np.zeros(0, np.int64))
    row = levels[level] * (len(tree.order) + 1)
    seg_start = row + tree.start[node]
    perm = np.argsort(seg_start, kind="stable")
    bounds = np.stack([seg_start[perm], (row + tree.stop[node])[perm]], axis=1).ravel()
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    reduced = np.empty((4, len(node)), np.int64)
    for k in range(4):
        reduced[k] = np.maximum.reduceat(tree.region_bbox[k], bounds)[::2][inverse]
    reduced[:2] *= -1
    if len(tree.region_interior):
        interior = np.add.reduceat(tree.region_interior, bounds)[::2][inverse]
    else:
        interior = np.zeros_like(node)
    return Components(node, level, reduced, interior)
