"""torchmetrics wrappers give the accumulators' numbers, with fixed-size summable states; score-map preparation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from wsol.metrics import (
    BoxAccumulator,
    BoxLocalizationMetric,
    ConfusionMatrix,
    MaskAccumulator,
    PxAPMetric,
    SegmentationMetric,
    prepare_scoremaps,
    prepare_scoremaps_numpy,
    quantize_scoremap,
)


def _batch(seed: int, n: int = 4, size: int = 24):
    rng = np.random.default_rng(seed)
    cams = torch.from_numpy(rng.normal(size=(n, 7, 7)))
    scoremaps = prepare_scoremaps(cams, (size, size))
    boxes = [torch.tensor([[2, 3, 15, 20]]), torch.tensor([[0, 0, 5, 5], [10, 10, 23, 23]])] * (n // 2)
    correct = torch.from_numpy(rng.random(n) < 0.5)
    masks = torch.from_numpy(rng.choice(np.array([0, 1, 255], np.uint8), size=(n, size, size)))
    return scoremaps, boxes, correct, masks


def test_box_metric_equals_the_accumulator_and_sums_like_ddp():
    batches = [_batch(seed) for seed in range(3)]
    full = BoxLocalizationMetric(cam_curve_interval=0.01)
    rank0, rank1 = BoxLocalizationMetric(cam_curve_interval=0.01), BoxLocalizationMetric(cam_curve_interval=0.01)
    reference = BoxAccumulator(0.01)
    for i, (scoremaps, boxes, correct, _) in enumerate(batches):
        full.update(scoremaps, boxes, correct)
        (rank0 if i % 2 == 0 else rank1).update(scoremaps, boxes, correct)
        reference.update(scoremaps.numpy(), [b.numpy() for b in boxes], correct.numpy())
    expected = reference.compute()
    values = full.compute()
    assert values["MaxBoxAccV2"].item() == expected.modes["MaxBoxAccV2"].value
    assert values["MaxBoxAcc"].item() == expected.modes["MaxBoxAcc"].value
    for iou in (30, 50, 70):
        assert values[f"MaxBoxAccV2_IoU{iou}"].item() == expected.modes["MaxBoxAccV2"].per_iou[iou]
    assert values["Top1Loc"].item() == expected.modes["MaxBoxAcc"].top1_value
    # What a DDP sync does: sum every state of the ranks ("sum" reduction), then compute.
    for name in rank0._defaults:
        setattr(rank0, name, getattr(rank0, name) + getattr(rank1, name))
    synced = rank0.compute()
    assert {k: v.item() for k, v in synced.items()} == {k: v.item() for k, v in values.items()}
    # The state is a fixed-size count table: (IoU thresholds x CAM thresholds), whatever the image count.
    assert full.correct_MaxBoxAccV2.shape == (3, 100)


def test_box_metric_without_classes_has_no_top1():
    scoremaps, boxes, _, _ = _batch(0)
    metric = BoxLocalizationMetric()
    metric.update(scoremaps, boxes)
    assert "Top1Loc" not in metric.compute()


def test_pxap_metric_equals_the_accumulator():
    metric, reference = PxAPMetric(0.001), MaskAccumulator(0.001)
    for seed in range(2):
        scoremaps, _, _, masks = _batch(seed)
        metric.update(scoremaps, masks)
        reference.update(scoremaps.numpy(), masks.numpy())
    values, expected = metric.compute(), reference.compute()
    assert values["PxAP"].item() == expected.pxap
    assert values["MaxPIoU"].item() == expected.piou
    assert metric.gt_true.tolist() == expected.gt_true.tolist()
    with pytest.raises(ValueError, match="0, 1 and 255"):
        metric.update(scoremaps, torch.full_like(masks, 3))


def test_segmentation_metric_equals_the_confusion_matrix():
    rng = np.random.default_rng(0)
    pred, gt = rng.integers(0, 3, (2, 6, 6)), rng.integers(0, 3, (2, 6, 6))
    gt[0, 0] = 255
    metric, reference = SegmentationMetric(3), ConfusionMatrix(3)
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    reference.update(pred, gt)
    values, expected = metric.compute(), reference.compute()
    assert values["mIoU"].item() == expected.miou
    assert np.array_equal(metric.confusion.numpy(), expected.confusion)
    assert np.allclose(values["IoU"].numpy(), expected.iou, equal_nan=True)


def _reference_minmax(scoremap: np.ndarray) -> np.ndarray:
    """The reference's ``normalize_scoremap``: subtract the min, then divide by the new max, in place."""
    scoremap = np.array(scoremap, dtype=np.float64)
    scoremap -= scoremap.min()
    scoremap /= scoremap.max()
    return scoremap


@pytest.mark.parametrize("size", [7, 14, 28])
def test_torch_bicubic_equals_cv2_inter_cubic(size):
    cams = np.random.default_rng(size).normal(size=(3, size, size))
    torch_maps = prepare_scoremaps(torch.from_numpy(cams).float(), (224, 224)).numpy()
    cv2_maps = prepare_scoremaps_numpy(cams.astype(np.float32), (224, 224))
    assert np.abs(torch_maps - cv2_maps).max() < 1e-12
    assert np.allclose(torch_maps.min(axis=(1, 2)), 0) and np.allclose(torch_maps.max(axis=(1, 2)), 1)
    # The reference resizes with cv2 in float64, then normalises: prepare_scoremaps_numpy is that pipeline.
    direct = _reference_minmax(
        cv2.resize(cams[0].astype(np.float32).astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    )
    assert np.array_equal(cv2_maps[0], direct)


def test_degenerate_cams_become_zero_maps():
    cams = torch.randn(3, 7, 7, dtype=torch.float64)
    cams[1] = 2.5  # constant
    cams[2, 3, 3] = float("nan")
    maps = prepare_scoremaps(cams, (16, 16))
    assert maps.dtype == torch.float64 and maps.shape == (3, 16, 16)
    assert torch.all(maps[1:] == 0)
    assert maps[0].min() == 0 and maps[0].max() == 1
    assert np.array_equal(maps[1].numpy(), np.zeros((16, 16)))
    assert quantize_scoremap(maps[0].numpy()).max() == 255
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        prepare_scoremaps(torch.zeros(7, 7), (16, 16))
