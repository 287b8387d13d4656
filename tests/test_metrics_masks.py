"""Mask metrics: PxAP and MaxPIoU by hand, exact binning, ignore regions; WSSS confusion-matrix metrics."""

from __future__ import annotations

import numpy as np
import pytest
from plain_wsoleval import plain_pxap, plain_pxap_histograms

from wsol.metrics import (
    BackgroundThresholdSweep,
    ConfusionMatrix,
    MaskAccumulator,
    confusion_matrix,
    labels_from_scores,
    pxap_bin_edges,
    pxap_bin_index,
    segmentation_scores,
)


def _tiny_case() -> tuple[np.ndarray, np.ndarray]:
    # Foreground scores 0.8, 0.5; background 0.6, 0.1; one ignored pixel with a high score.
    scores = np.array([[[0.8, 0.5, 0.6, 0.1, 0.99]]])
    mask = np.array([[[1, 1, 0, 0, 255]]], np.uint8)
    return scores, mask


def test_pxap_and_max_piou_by_hand():
    scores, mask = _tiny_case()
    acc = MaskAccumulator(0.25)  # edges 0, .25, .5, .75, 1, 2, 3
    acc.update(scores, mask)
    result = acc.compute()
    # Thresholds high to low: 0.75 -> tp 1 fp 0 (P 1, R 1/2); 0.5 -> tp 2 fp 1 (P 2/3, R 1); lower: no recall gain.
    assert result.pxap == pytest.approx(100 * (1 * 0.5 + 2 / 3 * 0.5), rel=1e-15)
    # Pixel IoU: 1/2 at 0.75, 2/3 at 0.5, 2/4 at 0.25 and 0.
    assert result.piou == pytest.approx(200 / 3)
    assert result.piou_threshold == 0.5
    assert result.gt_true.tolist() == [0, 0, 1, 1, 0, 0]  # the ignored 0.99 counts nowhere
    assert result.gt_false.tolist() == [1, 0, 1, 0, 0, 0]


def test_score_one_lands_in_the_one_to_two_bin():
    edges = pxap_bin_edges(0.001)
    assert len(edges) - 1 == 1002
    assert pxap_bin_index(np.array([1.0, 0.0, 0.999, np.nextafter(1.0, 0)]), edges).tolist() == [1000, 0, 999, 999]


@pytest.mark.parametrize("interval", [0.001, 0.01, 0.03, 0.3])
def test_bin_index_matches_numpy_histogram_on_edges_and_neighbours(interval):
    edges = pxap_bin_edges(interval)
    inner = edges[edges <= 1.0]
    values = np.concatenate(
        [
            inner,
            np.nextafter(inner, 2.0),
            np.nextafter(inner, -1.0)[1:],
            np.random.default_rng(0).random(20_000),
            np.random.default_rng(1).random(2_000).astype(np.float32).astype(np.float64),
        ]
    )
    values = values[(values >= 0) & (values <= 1)]
    expected = np.histogram(values, bins=edges)[0]
    assert np.array_equal(np.bincount(pxap_bin_index(values, edges), minlength=len(edges) - 1), expected)
    # float32 maps (what networks give) next to the edges: binned as their float64 values, like np.histogram.
    near = inner.astype(np.float32)
    values32 = np.concatenate([near, np.nextafter(near, np.float32(2)), np.nextafter(near, np.float32(-1))[1:]])
    values32 = values32[values32 <= 1]
    expected = np.histogram(values32, bins=edges)[0]
    assert np.array_equal(np.bincount(pxap_bin_index(values32, edges), minlength=len(edges) - 1), expected)


def test_histograms_and_pxap_equal_the_plain_reference():
    rng = np.random.default_rng(3)
    scores = rng.random((6, 20, 20)) ** 2
    masks = (rng.random((6, 20, 20)) < 0.3).astype(np.uint8)
    masks[0, :5] = 255
    acc = MaskAccumulator(0.001)
    acc.update(scores, masks)
    result = acc.compute()
    true, false = plain_pxap_histograms(scores, masks, 0.001)
    assert np.array_equal(result.gt_true, true) and np.array_equal(result.gt_false, false)
    assert result.pxap == plain_pxap(true, false)


def test_mask_validation():
    acc = MaskAccumulator(0.01)
    with pytest.raises(ValueError, match="0, 1 and 255"):
        acc.update(np.zeros((1, 3, 3)), np.full((1, 3, 3), 2, np.uint8))
    with pytest.raises(ValueError):
        acc.update(np.zeros((1, 3, 3)), np.zeros((1, 3, 4), np.uint8))
    acc.update(np.zeros((1, 3, 3)), np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="no foreground"):
        acc.compute()


def test_confusion_matrix_scores_by_hand():
    gt = np.array([[0, 1], [2, 255]])
    pred = np.array([[0, 1], [1, 2]])
    conf = confusion_matrix(pred, gt, 3)
    assert conf.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]  # the ignored pixel is dropped
    scores = segmentation_scores(conf)
    assert scores.iou.tolist() == [1.0, 0.5, 0.0]
    assert scores.miou == pytest.approx(50.0)
    assert scores.precision[:2].tolist() == [1.0, 0.5] and np.isnan(scores.precision[2])
    assert scores.recall.tolist() == [1.0, 1.0, 0.0]
    assert scores.f1.tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    assert scores.fpr.tolist() == [0.0, 0.5, 0.0]
    assert scores.pixel_accuracy == pytest.approx(200 / 3)
    assert scores.to_dict(["bg", "cat", "dog"])["precision"]["dog"] is None
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_streaming_confusion_matrix_merges():
    rng = np.random.default_rng(0)
    pred, gt = rng.integers(0, 4, (2, 5, 6)), rng.integers(0, 4, (2, 5, 6))
    a, b, whole = ConfusionMatrix(4), ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(pred[0], gt[0])
    b.update(pred[1], gt[1])
    whole.update(pred, gt)
    assert np.array_equal(a.merge(b).matrix, whole.matrix)


def test_background_sweep_equals_direct_argmax_per_threshold():
    rng = np.random.default_rng(5)
    scores = rng.random((3, 4, 9, 11))
    labels = rng.random((3, 4)) < 0.5
    labels[0] = False  # an image without any object class: all background
    gt = rng.integers(0, 5, (3, 9, 11))
    gt[1, :2] = 255
    thresholds = [0.5, 0.2, 0.35, 0.2]  # unsorted, with a repeat
    sweep = BackgroundThresholdSweep(5, thresholds)
    sweep.update(scores[:2], labels[:2], gt[:2])
    sweep.update(scores[2:], labels[2:], gt[2:])
    results, best = sweep.compute()
    for t, result in zip(thresholds, results, strict=True):
        direct = confusion_matrix(labels_from_scores(scores, labels, t), gt, 5)
        assert np.array_equal(result.confusion, direct)
    assert best == int(np.argmax([r.miou for r in results]))
    # Ties go to the background, as argmax over [bg = t, scores...] does.
    tie = labels_from_scores(np.full((1, 1, 2, 2), 0.3), np.array([[True]]), 0.3)
    assert np.all(tie == 0)


def test_warm_up_compiles_every_kernel_signature_the_evaluators_use():
    from wsol.metrics import _histogram, _sweep, warm_up_kernels

    warm_up_kernels()
    assert len(_sweep._sweep.signatures) == 1
    scores = {sig[0].dtype.name for sig in _histogram._count.signatures}
    assert {"float32", "float64"} <= scores
