"""Scoring of pseudo-masks: the per-image sweep equals the metrics' full sweep and the written label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.metrics import BackgroundThresholdSweep, ConfusionMatrix
from wsol.wsss import MaskScorer, ThresholdSweep
from wsol.wsss.inference import threshold_labels, top_class

THRESHOLDS = [0.0, 0.1, 0.25, 0.5, 0.75]


def _images(seed: int = 0, k: int = 6):
    """Images with 1-3 classes, float16-rounded maps (as stored), exact ties, and GT with ignore and extra classes."""
    rng = np.random.default_rng(seed)
    for i in range(5):
        classes = np.sort(rng.choice(k, size=1 + i % 3, replace=False))
        maps = rng.random((len(classes), 9, 11)).astype(np.float16)
        maps[:, 0, :3] = np.float16(0.25)  # ties with a threshold and between classes
        gt = rng.choice(np.concatenate([[0, 0, 255], classes + 1, [(classes[0] + 2) % k + 1]]), size=(9, 11))
        yield maps, classes, gt.astype(np.uint8)


def test_per_image_sweep_equals_the_full_sweep_and_the_written_label_maps():
    k = 6
    compact, full = ThresholdSweep(k, THRESHOLDS), BackgroundThresholdSweep(k + 1, THRESHOLDS)
    written = [ConfusionMatrix(k + 1) for _ in THRESHOLDS]
    for maps, classes, gt in _images(k=k):
        compact.update(maps, classes, gt)
        scores = np.zeros((1, k, *gt.shape))
        scores[0, classes] = maps
        present = np.isin(np.arange(k), classes)[None]
        full.update(scores, present, gt[None])
        best, label = top_class(torch.from_numpy(maps.astype(np.float64)), torch.from_numpy(classes))
        for t, cm in zip(THRESHOLDS, written, strict=True):
            cm.update(threshold_labels(best, label, t).numpy(), gt)
    assert np.array_equal(compact.total.matrices, full.matrices)
    for i, cm in enumerate(written):
        assert np.array_equal(cm.matrix, compact.total.matrices[i])
    assert compact.total.matrices[0].sum() == sum(int((gt != 255).sum()) for *_, gt in _images(k=k))


def test_scorer_report_baseline_and_ignored_pixels():
    scorer = MaskScorer(2, ["a", "b"])
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 255], [0, 2, 0, 2]], np.uint8)
    scorer.update_gt(gt)
    scorer.update_masks(pred, gt)
    report = scorer.report()
    # Scored pixels (neither GT nor prediction 255): 6. Background TP 2, FP 1 (at (1, 2)), FN 1 (at (0, 1))
    # -> IoU 1/2; a: TP 1, FP 1 -> 1/2; b: TP 1, FN 1 -> 1/2.
    scores = report["scores"]
    assert scores["IoU"] == pytest.approx({"background": 0.5, "a": 0.5, "b": 0.5})
    assert scores["mIoU"] == pytest.approx(50.0)
    assert scores["ignored_fraction"] == pytest.approx(1 / 7)  # one of 7 GT-scored pixels is 255 in pred
    # All background: background IoU 3/7, classes 0 -> 100 * (3/7) / 3.
    assert report["all_background"]["mIoU"] == pytest.approx(100 * 3 / 7 / 3)
    assert report["num_images"] == 1
    with pytest.raises(ValueError, match="differ in size"):
        scorer.update_masks(pred[:, :3], gt)
    with pytest.raises(ValueError, match="no sweep"):
        scorer.sweep_report()


def test_scorer_sweep_report_picks_the_best_threshold():
    scorer = MaskScorer(1, ["obj"], sweep=[0.2, 0.5, 0.8])
    gt = np.array([[0, 1, 1, 0]], np.uint8)
    stored = {"maps": np.array([[[0.3, 0.9, 0.6, 0.1]]], np.float16), "classes": np.array([0], np.int16)}
    scorer.update_gt(gt)
    scorer.update_sweep(stored, gt)
    report = scorer.sweep_report()
    # t=0.2: pred [1,1,1,0] -> bg IoU 1/2, obj 2/3; t=0.5: exact; t=0.8: [0,1,0,0] -> bg 2/3, obj 1/2.
    assert report["mIoU"] == pytest.approx([100 * (1 / 2 + 2 / 3) / 2, 100.0, 100 * (2 / 3 + 1 / 2) / 2])
    assert (report["best_threshold"], report["best_mIoU"]) == (0.5, pytest.approx(100.0))
    scorer.masks_from_sweep(0.5)
    assert scorer.report()["scores"]["mIoU"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="outside"):
        scorer.update_sweep(stored, np.array([[0, 2, 1, 0]], np.uint8))
