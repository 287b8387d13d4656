"""``wsol evaluate`` on metadata folders written by the test, on npz files, and on bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsol.cli import main
from wsol.metrics import BoxAccumulator, MaskAccumulator, resize_gt_boxes

SIZE = 32
REFERENCE = Path(
    os.environ.get("WSOL_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "wsoleval")
)


def _maps(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    maps = []
    for _ in range(n):
        cy, cx, r = rng.uniform(5, 27, 2).tolist() + [rng.uniform(3, 10)]
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2) + 0.2 * rng.random((SIZE, SIZE))
        maps.append((m - m.min()) / (m.max() - m.min()))
    return np.stack(maps)


def _write_box_split(root: Path, maps: np.ndarray) -> tuple[Path, Path, list[str], list[np.ndarray], np.ndarray]:
    """A CUB-style split: ids with folders, original sizes != score-map size, 1-2 boxes per image."""
    meta, scoremaps = root / "metadata" / "test", root / "scoremaps"
    meta.mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids, rows, sizes, labels, preds, boxes = [], [], [], [], [], []
    for i, scoremap in enumerate(maps):
        image_id = f"{i % 2:03d}.Bird/img_{i}.jpg"
        width, height = (60, 45) if i % 2 else (100, 80)
        image_boxes = []
        for _ in range(1 + i % 2):
            x0, x1 = sorted(rng.integers(0, width, 2).tolist())
            y0, y1 = sorted(rng.integers(0, height, 2).tolist())
            image_boxes.append([x0, y0, x1, y1])
            rows.append(f"{image_id},{x0},{y0},{x1},{y1}")
        ids.append(image_id)
        sizes.append(f"{image_id},{width},{height}")
        labels.append(f"{image_id},{i % 3}")
        preds.append(f"{image_id},{(i % 3) if i % 4 else 2}")
        boxes.append(resize_gt_boxes(np.array(image_boxes), (width, height), (SIZE, SIZE)))
        (scoremaps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(scoremaps / f"{image_id}.npy", scoremap.astype(np.float32))
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", rows)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "predictions.txt").write_text("\n".join(preds) + "\n")
    correct = np.array([(i % 3) == ((i % 3) if i % 4 else 2) for i in range(len(maps))])
    return meta, scoremaps, ids, boxes, correct


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["evaluate", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_box_metadata_folder_gives_the_accumulator_numbers(tmp_path, capsys):
    maps = _maps(8)
    meta, scoremaps, ids, boxes, correct = _write_box_split(tmp_path, maps)
    out = tmp_path / "out" / "result.json"
    code, stdout, _ = _run(
        ["--metadata", str(meta), "--scoremaps", str(scoremaps), "--predictions", str(tmp_path / "predictions.txt"),
         "--cam-curve-interval", "0.01", "--out", str(out), "--plots", str(tmp_path / "plots")],
        capsys,
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    acc = BoxAccumulator(0.01)
    acc.update(maps.astype(np.float32), boxes, correct)
    expected = acc.compute().to_dict()
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "Top1Loc", "iou_thresholds", "n_images"):
        assert result[key] == json.loads(json.dumps(expected[key])), key
    assert result["curves"]["MaxBoxAccV2"] == json.loads(json.dumps(expected["curves"]["MaxBoxAccV2"]))
    assert "PxAP" not in result and result["degenerate_scoremaps"]["count"] == 0
    assert f"MaxBoxAccV2  {expected['MaxBoxAccV2']['value']:7.2f}" in stdout
    assert (tmp_path / "plots" / "box_accuracy.png").stat().st_size > 1000

    parallel = tmp_path / "parallel.json"
    assert _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--cam-curve-interval", "0.01",
                 "--workers", "2", "--out", str(parallel)], capsys)[0] == 0  # fmt: skip
    parallel_result = json.loads(parallel.read_text())
    assert parallel_result["MaxBoxAccV2"] == result["MaxBoxAccV2"] and "Top1Loc" not in parallel_result


def _write_mask_split(root: Path, maps: np.ndarray) -> tuple[Path, Path, np.ndarray]:
    """An OpenImages-style split: instance PNGs at another resolution, ignore PNGs, one image without one."""
    meta, scoremaps, masks_dir = root / "meta", root / "maps", root / "masks"
    for folder in (meta, scoremaps, masks_dir):
        folder.mkdir()
    rng = np.random.default_rng(2)
    rows, ids, expected = [], [], []
    for i, scoremap in enumerate(maps):
        image_id = f"img{i}.jpg"
        ids.append(image_id)
        np.save(scoremaps / f"{image_id}.npy", scoremap)
        instances = [(rng.random((48, 48)) < 0.2).astype(np.uint8) * 255 for _ in range(1 + i % 2)]
        ignore = (rng.random((48, 48)) < 0.3).astype(np.uint8) * 255
        foreground = np.zeros((SIZE, SIZE), bool)
        for k, inst in enumerate(instances):
            cv2.imwrite(str(masks_dir / f"{i}_{k}.png"), inst)
            foreground |= cv2.resize(inst, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0
        label = foreground.astype(np.uint8)
        ignore_rel = ""
        if i != 1:  # image 1 has no ignore file: it simply has no ignore region (the reference crashes)
            ignore_rel = f"masks/{i}_ignore.png"
            cv2.imwrite(str(root / ignore_rel), ignore)
            label[(cv2.resize(ignore, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST) > 0) & ~foreground] = 255
        rows += [f"{image_id},masks/{i}_{k}.png,{ignore_rel if k == 0 else ''}" for k in range(len(instances))]
        expected.append(label)
    (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (meta / "localization.txt").write_text("\n".join(rows) + "\n")
    return meta, scoremaps, np.stack(expected)


def test_mask_metadata_folder_gives_the_accumulator_numbers(tmp_path, capsys):
    maps = _maps(3, seed=4)
    meta, scoremaps, masks = _write_mask_split(tmp_path, maps)
    out = tmp_path / "masks.json"
    code, stdout, _ = _run(
        ["--metadata", str(meta), "--scoremaps", str(scoremaps), "--mask-root", str(tmp_path), "--out", str(out),
         "--plots", str(tmp_path / "plots")],
        capsys,
    )  # fmt: skip
    assert code == 0
    acc = MaskAccumulator(0.001)
    acc.update(maps, masks)
    expected = acc.compute()
    result = json.loads(out.read_text())
    assert result["PxAP"]["value"] == expected.pxap
    assert result["PIoU"]["value"] == expected.piou
    assert result["curves"]["PxAP_hist"]["gt_true"] == expected.gt_true.tolist()
    assert "MaxBoxAcc" not in result
    assert (tmp_path / "plots" / "pixel_pr.png").is_file()
    assert f"PxAP         {expected.pxap:7.2f}" in stdout


@pytest.mark.skipif(not (REFERENCE / "tinyimagenet10_lite0_100.npz").is_file(), reason=f"no reference at {REFERENCE}")
def test_npz_input_reproduces_the_reference_file(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    npz = REFERENCE / "tinyimagenet10_lite0_100.npz"
    assert _run(["--npz", str(npz), "--cam-curve-interval", "0.01", "--out", str(out)], capsys)[0] == 0
    result = json.loads(out.read_text())
    expected = json.loads((REFERENCE / "tinyimagenet10_lite0_100.interval_0.01.expected.json").read_text())
    for mode in ("MaxBoxAcc", "MaxBoxAccV2"):
        assert result[mode]["value"] == expected[mode]["value"]
        assert result[mode]["best_cam_threshold"] == expected[mode]["best_cam_threshold"]
        assert result["curves"][mode] == expected["curves"][mode]
        assert result["Top1Loc"][mode]["per_iou"] == expected[mode]["top1_loc_extension"]


def test_constant_and_all_nan_maps_are_zero_maps_with_a_warning(tmp_path, capsys):
    maps = _maps(4)
    meta, scoremaps, ids, boxes, _ = _write_box_split(tmp_path, maps)
    np.save(scoremaps / f"{ids[1]}.npy", np.full((SIZE, SIZE), 0.5, np.float32))
    np.save(scoremaps / f"{ids[2]}.npy", np.full((SIZE, SIZE), np.nan))
    out = tmp_path / "r.json"
    code, _, stderr = _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--cam-curve-interval", "0.01",
                            "--out", str(out)], capsys)  # fmt: skip
    assert code == 0
    assert "2 score map(s) constant or all-NaN" in stderr and ids[1] in stderr
    result = json.loads(out.read_text())
    assert result["degenerate_scoremaps"] == {"count": 2, "image_ids": [ids[1], ids[2]]}
    zeroed = maps.copy()
    zeroed[1:3] = 0
    acc = BoxAccumulator(0.01)
    acc.update(zeroed.astype(np.float32), boxes)
    assert result["MaxBoxAccV2"]["per_iou"] == json.loads(json.dumps(acc.compute().to_dict()["MaxBoxAccV2"]["per_iou"]))


def _break(kind: str, meta: Path, scoremaps: Path, ids: list[str]) -> None:
    target = scoremaps / f"{ids[2]}.npy"
    if kind == "missing":
        target.unlink()
    elif kind == "nan":
        bad = np.load(target)
        bad[3, 4] = np.nan
        np.save(target, bad)
    elif kind == "range":
        np.save(target, np.load(target) * 3)
    elif kind == "shape":
        np.save(target, np.zeros((SIZE, SIZE + 1), np.float32))
    elif kind == "ndim":
        np.save(target, np.zeros((1, SIZE, SIZE), np.float32))
    elif kind == "dtype":
        np.save(target, np.zeros((SIZE, SIZE), np.uint8))
    elif kind in ("negative_box", "inverted_box"):
        lines = (meta / "localization.txt").read_text().splitlines()
        row = next(i for i, line in enumerate(lines) if line.startswith(f"{ids[2]},"))
        lines[row] = f"{ids[2]},-1,0,5,5" if kind == "negative_box" else f"{ids[2]},5,5,4,9"
        (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    elif kind == "unlisted_id":
        with (meta / "image_sizes.txt").open("a") as f:
            f.write("ghost.jpg,10,10\n")
    elif kind == "missing_size":
        lines = (meta / "image_sizes.txt").read_text().splitlines()
        (meta / "image_sizes.txt").write_text("\n".join(lines[:2] + lines[3:]) + "\n")


@pytest.mark.parametrize(
    ("kind", "patterns"),
    [
        ("missing", ["score map of", "img_2.jpg", "not found", "img_2.jpg.npy"]),
        ("nan", ["img_2.jpg", "NaN", "img_2.jpg.npy"]),
        ("range", ["img_2.jpg", "outside [0, 1]", "img_2.jpg.npy"]),
        ("shape", ["img_2.jpg", "shape (32, 33)", "img_0.jpg"]),
        ("ndim", ["img_2.jpg", "shape (1, 32, 32)"]),
        ("dtype", ["img_2.jpg", "floats"]),
        ("negative_box", ["localization.txt:", "negative"]),
        ("inverted_box", ["localization.txt:", "inverted"]),
        ("unlisted_id", ["image_sizes.txt", "ghost.jpg", "not in image_ids.txt"]),
        ("missing_size", ["image_sizes.txt", "img_2.jpg"]),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, capsys, kind, patterns):
    meta, scoremaps, ids, _, _ = _write_box_split(tmp_path, _maps(4))
    _break(kind, meta, scoremaps, ids)
    code, _, stderr = _run(
        ["--metadata", str(meta), "--scoremaps", str(scoremaps), "--cam-curve-interval", "0.01"], capsys
    )
    assert code == 2
    assert stderr.startswith("wsol evaluate: error: ")
    for pattern in patterns:
        assert pattern in stderr, (pattern, stderr)


def test_bad_input_is_reported_from_worker_processes_too(tmp_path, capsys):
    meta, scoremaps, ids, _, _ = _write_box_split(tmp_path, _maps(6))
    _break("nan", meta, scoremaps, ids)
    args = ["--metadata", str(meta), "--scoremaps", str(scoremaps), "--cam-curve-interval", "0.01", "--workers", "2"]
    code, _, stderr = _run(args, capsys)
    assert code == 2 and "img_2.jpg" in stderr and "NaN" in stderr


def test_argument_errors(tmp_path, capsys):
    meta, scoremaps, _, _, _ = _write_box_split(tmp_path, _maps(2))
    assert "needs --scoremaps" in _run(["--metadata", str(meta)], capsys)[2]
    assert (
        "no GT masks" in _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--metrics", "masks"], capsys)[2]
    )
    assert "--workers" in _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--workers", "0"], capsys)[2]
    npz = tmp_path / "bad.npz"
    np.savez(npz, cams=np.zeros((2, 4, 4)), gt_boxes_flat=np.zeros((3, 4), int), gt_box_counts=np.array([1, 1]))
    assert "gt_box_counts sums to 2" in _run(["--npz", str(npz)], capsys)[2]
