"""Box metrics: hand-computed cases (re-derived from the protocol, not copied), validation, GT rescaling."""

from __future__ import annotations

import numpy as np
import pytest
from plain_wsoleval import plain_boxes

from wsol.metrics import (
    BoxAccumulator,
    best_box_ious,
    box_iou_inclusive,
    boxes_from_scoremap,
    cam_thresholds,
    check_boxes,
    integer_thresholds,
    resize_gt_boxes,
)


def test_inclusive_iou_hand_case():
    # [1,2,5,6] is 5x5 = 25 px, [3,1,4,5] is 2x5 = 10 px; they share x 3..4, y 2..5: 2x4 = 8 px.
    iou = box_iou_inclusive(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))
    assert iou[0, 0] == 8 / 27
    # A continuous-coordinate IoU would give 3/17; the +1 convention is what the reference uses.
    assert iou[0, 0] != pytest.approx(3 / 17)


def test_inclusive_iou_touching_identical_and_disjoint():
    a = np.array([[0, 0, 0, 0], [2, 2, 4, 4]])
    b = np.array([[0, 0, 0, 0], [4, 4, 6, 6], [7, 7, 9, 9]])
    iou = box_iou_inclusive(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == 1.0  # a single pixel is a 1x1 box
    assert iou[1, 1] == 1 / (9 + 9 - 1)  # boxes sharing one corner pixel
    assert iou[1, 2] == 0.0 and iou[0, 2] == 0.0


def test_single_pixel_blob_gives_box_one_pixel_too_large():
    scoremap = np.zeros((5, 5))
    scoremap[2, 2] = 1.0
    for multi in (False, True):
        (boxes,) = boxes_from_scoremap(scoremap, [0.5], multi_contour=multi)
        # boundingRect (2, 2, 1, 1) -> (x, y, x + w, y + h): the reference's +w convention.
        assert boxes.tolist() == [[2, 2, 3, 3]]


def test_box_clipped_at_the_border():
    scoremap = np.zeros((4, 5))
    scoremap[1:, 3:] = 1.0  # x 3..4, y 1..3: x + w = 5 and y + h = 4 are clipped to W - 1 = 4, H - 1 = 3
    (boxes,) = boxes_from_scoremap(scoremap, [0.0])
    assert boxes.tolist() == [[3, 1, 4, 3]]


def test_four_by_five_map_at_several_thresholds():
    scoremap = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.5, 0.5, 0.0, 0.0],
            [0.0, 0.5, 1.0, 0.0, 0.8],
            [0.0, 0.0, 0.0, 0.0, 0.8],
        ]
    )
    # q = uint8(255 s): 0.5 -> 127, 0.8 -> 204, 1.0 -> 255; M = 255, T = int(tau * 255).
    thresholds = [0.0, 0.5, 0.9, 1.0]
    v1 = boxes_from_scoremap(scoremap, thresholds, multi_contour=False)
    v2 = boxes_from_scoremap(scoremap, thresholds, multi_contour=True)
    # T = 0: the 2x2 block (x 1..2, y 1..2) and the column x = 4, y 2..3. The block's polygon has area 1,
    # the column's 0, so v1 keeps the block.
    assert v1[0].tolist() == [[1, 1, 3, 3]]
    assert sorted(v2[0].tolist()) == [[1, 1, 3, 3], [4, 2, 4, 3]]
    # T = 127: the centre pixel (255) and the column (204) remain.
    assert sorted(v2[1].tolist()) == [[2, 2, 3, 3], [4, 2, 4, 3]]
    # Both contours have area 0: v1 takes the first in OpenCV's order, as the reference's max() does.
    assert v1[1].tolist() == plain_boxes(scoremap, [0.5], multi_contour=False)[0].tolist()
    # T = 229: only the centre pixel; T = 255: nothing, the reference's [0, 0, 0, 0].
    assert v1[2].tolist() == v2[2].tolist() == [[2, 2, 3, 3]]
    assert v1[3].tolist() == v2[3].tolist() == [[0, 0, 0, 0]]


def test_hole_contours_count_in_v2_only():
    scoremap = np.zeros((7, 7))
    scoremap[1:6, 1:6] = 1.0
    scoremap[3, 3] = 0.0  # a one-pixel hole
    (v2,) = boxes_from_scoremap(scoremap, [0.5], multi_contour=True)
    (v1,) = boxes_from_scoremap(scoremap, [0.5], multi_contour=False)
    # Outer contour x 1..5 -> [1, 1, 6, 6]; the hole contour runs through the 8 pixels around (3, 3):
    # x 2..4 -> [2, 2, 5, 5].
    assert sorted(v2.tolist()) == [[1, 1, 6, 6], [2, 2, 5, 5]]
    assert v1.tolist() == [[1, 1, 6, 6]]


def test_all_zero_map_predicts_the_origin_box():
    gt = np.array([[0, 0, 1, 1]])
    v1, v2 = best_box_ious(np.zeros((8, 8)), gt, cam_thresholds(0.01))
    # [0, 0, 0, 0] is a 1x1 box at the origin: IoU 1/4 with a 2x2 GT box at the origin, not 0.
    assert np.all(v1 == 0.25) and np.all(v2 == 0.25)


def test_integer_thresholds_equal_exact_fractions_and_float32_grids_differ():
    for n in (100, 1000):
        k = np.arange(n)
        assert np.array_equal(integer_thresholds(cam_thresholds(1 / n), 255), (k * 255) // n)
    float32_grid = np.arange(0, 1, 0.01, dtype=np.float32).astype(np.float64)
    shifted = integer_thresholds(float32_grid, 255) != integer_thresholds(cam_thresholds(0.01), 255)
    assert shifted.sum() == 4  # docs/protocol.md §2.4: why the grid must be float64
    # Unnormalised maps: int(float64(0.58) * 100) is 57, not 58.
    assert integer_thresholds(cam_thresholds(0.01), 100)[58] == 57


def test_resize_gt_boxes_truncates_like_the_reference():
    boxes = np.array([[10, 20, 63, 63], [33, 0, 99, 49]])
    out = resize_gt_boxes(boxes, (64, 64), (224, 224))
    assert out[0].tolist() == [35, 70, 220, 220]  # 63 * 224 / 64 = 220.5 -> 220
    out = resize_gt_boxes(boxes[1:], (100, 50), (224, 224))
    assert out[0].tolist() == [73, 0, 221, 219]  # 33 * 2.24 = 73.92; 49 * 224 / 50 = 219.52


def test_nan_scoremap_is_rejected():
    scoremap = np.zeros((6, 6))
    scoremap[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        boxes_from_scoremap(scoremap, [0.5])
    with pytest.raises(ValueError, match="NaN"):
        BoxAccumulator(0.01).update(scoremap[None], [np.array([[0, 0, 2, 2]])])


def test_out_of_range_scoremap_is_rejected():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        BoxAccumulator(0.01).update(np.full((1, 4, 4), 1.5), [np.array([[0, 0, 2, 2]])])


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([[-1, 0, 2, 2]], "negative"),
        ([[3, 0, 2, 2]], "x0 <= x1"),
        ([[0, 3, 2, 2]], "y0 <= y1"),
        ([[0, 0, 2]], "shape"),
        ([[0.5, 0, 2, 2]], "integers"),
    ],
)
def test_box_convention_violations_are_rejected(boxes, message):
    with pytest.raises(ValueError, match=message):
        check_boxes(np.array(boxes))
    if np.asarray(boxes).shape[-1] == 4:
        with pytest.raises(ValueError, match=message):
            BoxAccumulator(0.01).update(np.zeros((1, 4, 4)), [np.array(boxes)])


def test_accumulator_argument_checks():
    with pytest.raises(ValueError, match="IoU 50"):
        BoxAccumulator(0.01, iou_thresholds=(30, 70))
    assert BoxAccumulator(0.01, iou_thresholds=(30, 70), modes=("MaxBoxAccV2",)).modes == ("MaxBoxAccV2",)
    with pytest.raises(ValueError, match="modes"):
        BoxAccumulator(0.01, modes=("MaxBoxAccV3",))
    with pytest.raises(ValueError, match="cam_curve_interval"):
        BoxAccumulator(0.0)
    acc = BoxAccumulator(0.01)
    with pytest.raises(ValueError, match="GT box arrays"):
        acc.update(np.zeros((2, 4, 4)), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match="no GT box"):
        acc.update(np.zeros((1, 4, 4)), [np.zeros((0, 4), int)])
    with pytest.raises(ValueError, match="no image"):
        BoxAccumulator(0.01).compute()


def test_maxboxacc_of_a_perfect_and_a_blank_map():
    scoremap = np.zeros((2, 10, 10))
    scoremap[0, 2:6, 3:8] = 1.0  # object x 3..7, y 2..5 -> predicted [3, 2, 8, 6] with the +w convention
    gt = [np.array([[3, 2, 7, 5]]), np.array([[0, 0, 9, 9]])]
    acc = BoxAccumulator(0.01)
    acc.update(scoremap, gt, cls_correct=[True, False])
    result = acc.compute()
    v2 = result.modes["MaxBoxAccV2"]
    # Image 0: IoU (5 * 4) / (6 * 5) = 2/3 at every τ: correct at 30 and 50, never at 70.
    # Image 1 (blank): box [0, 0, 0, 0] vs the full 10x10 image: IoU 1/100, never correct.
    assert v2.per_iou == {30: 50.0, 50: 50.0, 70: 0.0}
    assert v2.value == pytest.approx(100 / 3)
    assert result.modes["MaxBoxAcc"].value == 50.0
    assert v2.top1 is not None and v2.top1[50].max_over_thresholds == 50.0
    assert result.to_dict()["Top1Loc"]["MaxBoxAcc"]["value"] == 50.0


def test_noise_maps_with_hundreds_of_maxima_match_the_traced_boxes():
    scoremap = np.random.default_rng(0).random((40, 40))  # white noise: hundreds of regional maxima
    gt = np.array([[5, 5, 30, 30], [0, 20, 10, 39]])
    thresholds = cam_thresholds(0.01)
    for fast, multi in zip(best_box_ious(scoremap, gt, thresholds), (False, True), strict=True):
        assert fast.tolist() == [box_iou_inclusive(b, gt).max() for b in plain_boxes(scoremap, thresholds, multi)]


def test_a_hole_is_a_contour_box_and_an_open_ring_has_none():
    ring = np.zeros((9, 9))
    ring[2:7, 2:7] = 1.0
    ring[4, 4] = 0.0  # one-pixel hole: its contour runs through (3..5, 3..5), box [3, 3, 6, 6] with +w
    gt = np.array([[3, 3, 6, 6]])
    thresholds = cam_thresholds(0.01)
    v1, v2 = best_box_ious(ring, gt, thresholds)
    # The outer contour's box is [2, 2, 7, 7]: 16 of its 36 pixels are the GT's.
    assert set(v1.tolist()) == {16 / 36}
    assert set(v2.tolist()) == {1.0}
    opened = ring.copy()
    opened[4, 2:5] = 0.0  # the hole now reaches the ring's outside: no hole contour at any τ
    v1, v2 = best_box_ious(opened, gt, thresholds)
    assert set(v2.tolist()) == {16 / 36} and v1.tolist() == v2.tolist()
