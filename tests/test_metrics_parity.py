"""Exact parity with the reference implementation's outputs in ``../shared/reference/wsoleval``.

Every point of every curve, both grids, both box modes, the Top-1 extension, PxAP and its histograms.
The folder is read relative to the repository root, or from ``WSOL_REFERENCE``; tests skip without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from plain_wsoleval import plain_boxes

from wsol.metrics import BoxAccumulator, MaskAccumulator, boxes_from_scoremap, cam_thresholds, resize_gt_boxes

REFERENCE = Path(
    os.environ.get("WSOL_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "wsoleval")
)
CASES = ["synth_200", "tinyimagenet10_lite0_100"]
INTERVALS = [0.001, 0.01]

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "synth_200.npz").is_file(),
    reason=f"reference cases not found at {REFERENCE} (set WSOL_REFERENCE to the shared reference/wsoleval folder)",
)


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    out = {}
    for case in CASES:
        with np.load(REFERENCE / f"{case}.npz") as data:
            arrays = {k: data[k] for k in data.files}
        gt = np.split(arrays["gt_boxes_flat"], np.cumsum(arrays["gt_box_counts"])[:-1])
        if "image_sizes" in arrays:  # boxes in original-image pixels: the protocol's int(x * 224 / W)
            gt = [resize_gt_boxes(g, tuple(s), (224, 224)) for g, s in zip(gt, arrays["image_sizes"], strict=True)]
        out[case] = {"arrays": arrays, "gt": gt}
    return out


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("case", CASES)
def test_box_metrics_match_the_reference(cases, case, interval):
    expected = json.loads((REFERENCE / f"{case}.interval_{interval}.expected.json").read_text())
    data = cases[case]
    acc = BoxAccumulator(interval)
    for start in range(0, len(data["gt"]), 32):
        stop = start + 32
        acc.update(
            data["arrays"]["cams"][start:stop], data["gt"][start:stop], data["arrays"]["cls_correct"][start:stop]
        )
    result = acc.compute()
    out = result.to_dict()
    assert result.n_images == expected["n_images"]
    assert out["curves"]["cam_thresholds"] == expected["curves"]["cam_thresholds"]
    for mode in ("MaxBoxAcc", "MaxBoxAccV2"):
        assert out["curves"][mode] == expected["curves"][mode], f"{mode} curve differs"
        assert out[mode]["value"] == expected[mode]["value"]
        assert out[mode]["per_iou"] == expected[mode]["per_iou"]
        assert out[mode]["best_cam_threshold"] == expected[mode]["best_cam_threshold"]
        assert out["Top1Loc"][mode]["per_iou"] == expected[mode]["top1_loc_extension"]


@pytest.mark.parametrize("interval", INTERVALS)
def test_pxap_matches_the_reference(cases, interval):
    expected = json.loads((REFERENCE / f"synth_200.interval_{interval}.expected.json").read_text())
    arrays = cases["synth_200"]["arrays"]
    acc = MaskAccumulator(interval)
    for start in range(0, len(arrays["cams"]), 50):
        acc.update(arrays["cams"][start : start + 50], arrays["gt_masks"][start : start + 50])
    result = acc.compute()
    assert result.gt_true.tolist() == expected["curves"]["PxAP_hist"]["gt_true"]
    assert result.gt_false.tolist() == expected["curves"]["PxAP_hist"]["gt_false"]
    assert result.pxap == expected["PxAP"]["value"]
    assert result.piou == expected["PxAP"]["MaxPIoU_extension"]


def test_per_threshold_boxes_match_opencv_tracing(cases):
    """The public per-threshold boxes equal the reference loop's, including its contour order."""
    arrays = cases["synth_200"]["arrays"]
    thresholds = cam_thresholds(0.01)
    for index in (0, 1, 22, 112, 130, 166):  # smooth, two objects, noise, part-biased, stress, all-zero
        scoremap = arrays["cams"][index].astype(np.float64)
        for multi in (False, True):
            ours = boxes_from_scoremap(scoremap, thresholds, multi_contour=multi)
            ref = plain_boxes(scoremap, thresholds, multi_contour=multi)
            for t, (a, b) in enumerate(zip(ours, ref, strict=True)):
                assert a.tolist() == b.tolist(), f"image {index}, τ = {thresholds[t]}, multi_contour={multi}"
