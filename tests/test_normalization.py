"""Score-map normalisations: hand-computed cases, torch/numpy agreement, and parity with the published code.

The parity cases (``tinyimagenet10_lite0_100_raw.<norm>.interval_<Δ>.expected.json`` in the shared reference
folder) hold every curve point that GenDisc/IVR's ``normalize_scoremap`` followed by the reference evaluator
gives on 100 real raw CAMs; the tests skip when the folder is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wsol.metrics import (
    NORMALIZATIONS,
    BoxAccumulator,
    check_normalization,
    normalize_scoremaps,
    normalize_scoremaps_torch,
    prepare_scoremaps,
    prepare_scoremaps_numpy,
    resize_gt_boxes,
)

REFERENCE = Path(
    os.environ.get("WSOL_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "wsoleval")
)
RAW_CASE = "tinyimagenet10_lite0_100_raw"

# A 2 x 5 map (n = 10) whose sorted values are easy to read off: -2, -1, 0, 0, 1, 2, 3, 4, 5, 8.
HAND = np.array([[3.0, -1.0, 0.0, 8.0, 2.0], [0.0, 5.0, -2.0, 1.0, 4.0]])


def test_minmax_by_hand():
    expected = (HAND + 2.0) / 10.0
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "minmax"), expected)


def test_max_by_hand():
    expected = np.maximum(HAND, 0) / 8.0
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "max"), expected)


def test_pas_by_hand():
    # m' = m + 2 sorts to 0, 1, 2, 2, 3, 4, 5, 6, 7, 10; int(10 * 0.9) = 9 -> divide by 10 (no clipping here).
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "pas"), (HAND + 2.0) / 10.0)
    # With a lower-ranked divisor values clip: n = 20 by stacking, sorted index int(20 * 0.9) = 18 -> 10 again.
    tall = np.concatenate([HAND, HAND + 0.0])
    np.testing.assert_array_equal(normalize_scoremaps(tall, "pas"), (tall + 2.0) / 10.0)
    # A map where index 9 of 11 values is below the max: 0..9 and 20 -> m' / 9, clipped at 1.
    ramp = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20]], dtype=float)
    np.testing.assert_array_equal(normalize_scoremaps(ramp, "pas"), np.minimum(1.0, ramp / 9.0))


def test_ivr_by_hand():
    # int(10 * 0.6) = 6 -> sorted[6] = 3; relu(m - 3) peaks at 5.
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "ivr", 0.6), np.maximum(HAND - 3.0, 0) / 5.0)
    # p = 0 subtracts the minimum: the same as min-max.
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "ivr", 0.0), normalize_scoremaps(HAND, "minmax"))
    # int(10 * 0.29) = 2 -> sorted[2] = 0.
    np.testing.assert_array_equal(normalize_scoremaps(HAND, "ivr", 0.29), np.maximum(HAND, 0) / 8.0)


@pytest.mark.parametrize("name", NORMALIZATIONS)
def test_nan_and_constant_maps_become_zeros(name):
    maps = np.stack([np.full((2, 5), 2.5), HAND.copy(), HAND.copy()])
    maps[1, 0, 0] = np.nan
    maps[2, 1, 1] = np.inf
    out = normalize_scoremaps(maps, name)
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(normalize_scoremaps_torch(torch.from_numpy(maps), name).numpy(), 0.0)


def test_degenerate_results():
    negative = -np.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_array_equal(normalize_scoremaps(negative, "max"), 0.0)
    # 90 % of the map at its minimum: pas's divisor is 0 and the rule's limit is 1 above the minimum.
    mostly_min = np.zeros((2, 5))
    mostly_min[0, 0] = 3.0
    np.testing.assert_array_equal(normalize_scoremaps(mostly_min, "pas"), (mostly_min > 0).astype(float))
    # ivr's percentile value is the maximum: nothing is left above it.
    top_heavy = np.array([[0.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(normalize_scoremaps(top_heavy, "ivr", 0.5), 0.0)
    for name in ("max", "pas", "ivr"):
        for case in (negative, mostly_min, top_heavy):
            got = normalize_scoremaps_torch(torch.from_numpy(case)[None], name, 0.5)[0].numpy()
            np.testing.assert_array_equal(got, normalize_scoremaps(case, name, 0.5))


@pytest.mark.parametrize(
    ("name", "percentile", "message"),
    [
        ("softmax", 0.6, "normalization must be one of minmax, max, pas, ivr, got 'softmax'"),
        ("ivr", 1.0, "percentile must lie in [0, 1), got 1.0"),
        ("ivr", -0.1, "percentile must lie in [0, 1), got -0.1"),
        ("ivr", "0.6", "percentile must be a number"),
    ],
)
def test_bad_arguments_name_the_argument(name, percentile, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[").replace(")", r"\)")):
        check_normalization(name, percentile)
    with pytest.raises(ValueError, match="normalization|percentile"):
        normalize_scoremaps(HAND, name, percentile)


@settings(max_examples=60, deadline=None)
@given(
    maps=arrays(np.float64, (2, 6, 7), elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)),
    name=st.sampled_from(NORMALIZATIONS.names()),
    percentile=st.floats(0.0, 0.99),
)
def test_torch_equals_numpy_and_stays_in_range(maps, name, percentile):
    expected = normalize_scoremaps(maps, name, percentile)
    got = normalize_scoremaps_torch(torch.from_numpy(maps), name, percentile).numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected.min() >= 0.0 and expected.max() <= 1.0


@pytest.mark.parametrize("name", NORMALIZATIONS)
def test_prepare_paths_agree(name):
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(3, 4, 4))
    via_cv2 = prepare_scoremaps_numpy(cams, (16, 16), name, 0.5)
    via_torch = prepare_scoremaps(torch.from_numpy(cams), (16, 16), name, 0.5).numpy()
    np.testing.assert_allclose(via_torch, via_cv2, atol=1e-12)
    assert prepare_scoremaps_numpy(cams, (16, 16)).max() == 1.0  # min-max stays the default


def test_inputs_are_not_mutated():
    maps = HAND.copy()
    for name in NORMALIZATIONS:
        normalize_scoremaps(maps, name)
        normalize_scoremaps_torch(torch.from_numpy(maps)[None], name)
    np.testing.assert_array_equal(maps, HAND)


@pytest.mark.data
@pytest.mark.skipif(
    not (REFERENCE / f"{RAW_CASE}.npz").is_file(),
    reason=f"reference raw maps not found at {REFERENCE} (set WSOL_REFERENCE to the shared reference/wsoleval folder)",
)
@pytest.mark.parametrize("interval", [0.001, 0.01])
@pytest.mark.parametrize("name", NORMALIZATIONS)
def test_curves_match_the_published_code(name, interval):
    expected = json.loads((REFERENCE / f"{RAW_CASE}.{name}.interval_{interval}.expected.json").read_text())
    with np.load(REFERENCE / f"{RAW_CASE}.npz") as data:
        arrays_ = {k: data[k] for k in data.files}
    gt = np.split(arrays_["gt_boxes_flat"], np.cumsum(arrays_["gt_box_counts"])[:-1])
    gt = [resize_gt_boxes(g, tuple(s), (224, 224)) for g, s in zip(gt, arrays_["image_sizes"], strict=True)]
    percentile = expected["percentile"] if expected.get("percentile") is not None else 0.6
    for normalize in (
        lambda m: normalize_scoremaps(m, name, percentile),
        lambda m: normalize_scoremaps_torch(torch.from_numpy(m), name, percentile).numpy(),
    ):
        acc = BoxAccumulator(interval)
        for start in range(0, len(gt), 25):
            acc.update(normalize(arrays_["cams"][start : start + 25].astype(np.float64)), gt[start : start + 25])
        out = acc.compute().to_dict()
        for mode in ("MaxBoxAcc", "MaxBoxAccV2"):
            assert out["curves"][mode] == expected["curves"][mode], f"{name} {mode} curve differs"
            assert out[mode]["value"] == expected[mode]["value"]


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 300), elements=st.sampled_from([-2.0, -0.5, 0.0, 0.0, 1e-300, 3.0, 7.5])),
    data=st.data(),
)
def test_compiled_selection_equals_sorting(values, data):
    from wsol.metrics._select import kth_smallest

    k = data.draw(st.integers(0, values.size - 1))
    assert kth_smallest(values, k) == np.sort(values)[k]
    spread = values * np.linspace(1.0, 2.0, values.size)  # distinct values next to heavy ties
    assert kth_smallest(spread, k) == np.sort(spread)[k]
