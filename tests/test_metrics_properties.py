"""Properties: the fast box engine equals the plain per-threshold loop on arbitrary maps; IoU is a
similarity; curves are ordered where they must be; chunking, merging and image order change nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plain_wsoleval import plain_boxes, plain_iou

from wsol.metrics import BoxAccumulator, MaskAccumulator, best_box_ious, box_iou_inclusive, cam_thresholds

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scoremap(seed: int, height: int, width: int, style: int) -> np.ndarray:
    """Maps that stress contour tracing: plateaus, holes, rings, noise, single pixels, unnormalised maxima."""
    rng = np.random.default_rng(seed)
    if style == 0:  # few grey levels: large plateaus, holes and islands
        return rng.choice([0.0, 0.3, 0.5, 0.8, 1.0], size=(height, width))
    if style == 1:  # white noise: many tiny contours at every level
        return rng.random((height, width))
    yy, xx = np.mgrid[:height, :width]
    out = np.zeros((height, width))
    for _ in range(rng.integers(1, 4)):  # blobs and rings
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1, max(2, max(height, width) / 2))
        d = np.hypot(yy - cy, xx - cx) / r
        out += np.exp(-(d**2)) if rng.random() < 0.6 else np.exp(-((d - 1) ** 2) * 8)
    out += rng.random((height, width)) * rng.uniform(0, 0.3)
    out /= out.max()
    if style == 3:  # not min-max normalised: max(q) < 255 changes the integer thresholds
        out *= rng.uniform(0.2, 0.9)
    return out


maps = st.builds(
    _scoremap,
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(1, 18),
    width=st.integers(1, 18),
    style=st.integers(0, 3),
)


@st.composite
def gt_boxes(draw, height: int, width: int) -> np.ndarray:
    boxes = []
    for _ in range(draw(st.integers(1, 3))):
        x0, x1 = sorted(draw(st.integers(0, width - 1)) for _ in range(2))
        y0, y1 = sorted(draw(st.integers(0, height - 1)) for _ in range(2))
        boxes.append([x0, y0, x1, y1])
    return np.array(boxes)


@SETTINGS
@given(data=st.data(), scoremap=maps, interval=st.sampled_from([0.01, 0.001]))
def test_fast_engine_equals_the_plain_loop(data, scoremap, interval):
    height, width = scoremap.shape
    gt = data.draw(gt_boxes(height, width))
    thresholds = cam_thresholds(interval)
    if interval == 0.001:
        thresholds = thresholds[::7]  # keep the plain loop quick; the grid values stay exact
    v1, v2 = best_box_ious(scoremap, gt, thresholds)
    for mode, ious in ((False, v1), (True, v2)):
        expected = [plain_iou(b, gt).max() for b in plain_boxes(scoremap, thresholds, mode)]
        assert ious.tolist() == expected


@SETTINGS
@given(a=st.lists(st.integers(0, 30), min_size=4, max_size=4), b=st.lists(st.integers(0, 30), min_size=4, max_size=4))
def test_iou_is_a_symmetric_similarity(a, b):
    a = np.array([[min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])]])
    b = np.array([[min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]])
    ab, ba = box_iou_inclusive(a, b)[0, 0], box_iou_inclusive(b, a)[0, 0]
    assert ab == ba and 0.0 <= ab <= 1.0
    assert box_iou_inclusive(a, a)[0, 0] == 1.0
    assert ab == plain_iou(a, b)[0, 0]


@st.composite
def datasets(draw) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 7))
    height, width = draw(st.integers(3, 14)), draw(st.integers(3, 14))
    seeds = draw(st.lists(st.integers(0, 2**31 - 1), min_size=n, max_size=n))
    styles = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    scoremaps = np.stack([_scoremap(s, height, width, k) for s, k in zip(seeds, styles, strict=True)])
    gts = [draw(gt_boxes(height, width)) for _ in range(n)]
    correct = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    masks = np.random.default_rng(seeds[0]).choice(np.array([0, 1, 255], np.uint8), size=(n, height, width))
    masks[0, 0, 0] = 1
    return scoremaps, gts, correct, masks


def _box_state(acc: BoxAccumulator) -> dict:
    return {m: (acc.correct[m].tolist(), acc.top1_correct[m].tolist()) for m in acc.modes} | {"n": acc.n_images}


@SETTINGS
@given(data=datasets(), split=st.integers(1, 6), order_seed=st.integers(0, 1000))
def test_chunks_merges_and_order_do_not_matter(data, split, order_seed):
    scoremaps, gts, correct, masks = data
    n = len(scoremaps)
    whole = BoxAccumulator(0.01)
    whole.update(scoremaps, gts, correct)
    chunked = BoxAccumulator(0.01)
    for start in range(0, n, split):
        chunked.update(scoremaps[start : start + split], gts[start : start + split], correct[start : start + split])
    order = np.random.default_rng(order_seed).permutation(n)
    head, tail = BoxAccumulator(0.01), BoxAccumulator(0.01)
    half = n // 2
    head.update(scoremaps[order[:half]], [gts[i] for i in order[:half]], correct[order[:half]])
    tail.update(scoremaps[order[half:]], [gts[i] for i in order[half:]], correct[order[half:]])
    assert _box_state(chunked) == _box_state(whole) == _box_state(head.merge(tail))

    masks_whole, masks_split = MaskAccumulator(0.01), MaskAccumulator(0.01)
    masks_whole.update(scoremaps, masks)
    for i in order:
        masks_split.update(scoremaps[i], masks[i])
    assert masks_whole.compute().pxap == masks_split.compute().pxap
    assert masks_whole.gt_true.tolist() == masks_split.gt_true.tolist()


@SETTINGS
@given(data=datasets())
def test_curves_are_ordered(data):
    scoremaps, gts, correct, masks = data
    acc = BoxAccumulator(0.01)
    acc.update(scoremaps, gts, correct)
    result = acc.compute()
    v1, v2 = result.modes["MaxBoxAcc"], result.modes["MaxBoxAccV2"]
    # A box correct at IoU 70 is correct at 50 and 30; all contours include the largest one.
    for mode in (v1, v2):
        assert np.all(mode.curves[30] >= mode.curves[50]) and np.all(mode.curves[50] >= mode.curves[70])
        assert mode.per_iou[30] >= mode.per_iou[50] >= mode.per_iou[70]
        assert np.all(mode.curves[30] <= 100) and np.all(mode.curves[70] >= 0)
        for iou in (30, 50, 70):  # Top-1 Loc never exceeds GT-known Loc
            assert np.all(acc.top1_correct["MaxBoxAcc"] <= acc.correct["MaxBoxAcc"])
            assert mode.top1[iou].max_over_thresholds <= mode.per_iou[iou]
    for iou in (30, 50, 70):
        assert np.all(v2.curves[iou] >= v1.curves[iou])

    pixel = MaskAccumulator(0.01)
    pixel.update(scoremaps, masks)
    curves = pixel.compute().curves
    assert np.all(np.diff(curves.tp) >= 0) and np.all(np.diff(curves.fp) >= 0)
    assert np.all(np.diff(curves.recall) >= 0) and curves.recall[-1] == 1.0
    assert 0.0 <= pixel.compute().pxap <= 100.0
