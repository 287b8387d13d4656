"""Score maps at scale: float16 maps, and npz archives read map by map instead of loaded whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsol.cli import main
from wsol.evaluation import NpzSource
from wsol.evaluation.npz import NpyMember, NpzArchive


def _case(n: int = 12, size: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    cams, boxes = [], []
    for _ in range(n):
        cy, cx = rng.integers(8, size - 8, 2)
        cams.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0) + 0.05 * rng.random((size, size)))
        half_w, half_h = rng.integers(3, 10, 2)  # boxes of their own sizes: the maps do not fit them exactly
        boxes.append([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    cams = np.stack(cams)
    cams = (cams - cams.min(axis=(1, 2), keepdims=True)) / np.ptp(cams, axis=(1, 2), keepdims=True)
    return {"cams": cams, "gt_boxes_flat": np.array(boxes, np.float32), "gt_box_counts": np.ones(n, np.int64)}


def _evaluate(path, tmp_path, name: str, capsys) -> dict:
    assert main(["evaluate", "--npz", str(path), "--no-progress", "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_npz_maps_are_read_one_by_one_when_stored_uncompressed(tmp_path, capsys):
    case = _case()
    np.savez(tmp_path / "plain.npz", **case)
    np.savez_compressed(tmp_path / "packed.npz", **case)
    stored = NpzArchive(tmp_path / "plain.npz").stored("cams")
    assert isinstance(stored, NpyMember) and stored.shape == case["cams"].shape and len(stored) == 12
    assert all(np.array_equal(stored[i], case["cams"][i]) for i in range(12))
    with pytest.raises(IndexError):
        stored[12]
    assert NpzArchive(tmp_path / "packed.npz").stored("cams") is None  # compressed: loaded instead
    assert NpzArchive(tmp_path / "plain.npz").stored("nope") is None
    source = NpzSource(tmp_path / "plain.npz")
    arrays = source._arrays()
    assert isinstance(arrays["cams"], NpyMember) and isinstance(arrays["gt_box_counts"], np.ndarray)
    plain = _evaluate(tmp_path / "plain.npz", tmp_path, "plain", capsys)
    packed = _evaluate(tmp_path / "packed.npz", tmp_path, "packed", capsys)
    assert plain["MaxBoxAccV2"] == packed["MaxBoxAccV2"] and plain["curves"] == packed["curves"]
    assert 0 < plain["MaxBoxAccV2"]["value"] < 100


def test_float16_maps_score_as_their_float64_values(tmp_path, capsys):
    case = _case()
    half = case["cams"].astype(np.float16)
    np.savez(tmp_path / "half.npz", **{**case, "cams": half})
    np.savez(tmp_path / "widened.npz", **{**case, "cams": half.astype(np.float64)})
    ours = _evaluate(tmp_path / "half.npz", tmp_path, "half", capsys)
    assert ours["MaxBoxAccV2"] == _evaluate(tmp_path / "widened.npz", tmp_path, "widened", capsys)["MaxBoxAccV2"]
    # Close to the float64 originals: the storage rounding moves a few pixels across a threshold at most.
    np.savez(tmp_path / "full.npz", **case)
    full = _evaluate(tmp_path / "full.npz", tmp_path, "full", capsys)
    assert ours["MaxBoxAccV2"]["value"] == pytest.approx(full["MaxBoxAccV2"]["value"], abs=1.0)
