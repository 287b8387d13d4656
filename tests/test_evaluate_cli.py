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

    # The folder form: OUT/metrics.json, and the plots beside it with --plots; the file forms above still work.
    folder = tmp_path / "folder"
    code, _, err = _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--predictions",
                         str(tmp_path / "predictions.txt"), "--cam-curve-interval", "0.01", "--out", str(folder),
                         "--plots"], capsys)  # fmt: skip
    assert code == 0 and "deprecated" not in err
    assert json.loads((folder / "metrics.json").read_text())["MaxBoxAccV2"] == result["MaxBoxAccV2"]
    assert (folder / "box_accuracy.png").stat().st_size > 1000
    code, _, err = _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--out", str(out)], capsys)
    assert code == 0 and "--out " + str(out) + " (a file) is deprecated; give a folder" in err
    assert _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--plots"], capsys)[0] == 2


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


# ----------------------------------------------------------------------------------- --normalization
def _raw_npz(path: Path, n: int = 8, seed: int = 5) -> tuple[Path, np.ndarray]:
    """Raw maps of any sign and range (scaled, shifted Gaussians plus noise) with one or two boxes each."""
    rng = np.random.default_rng(seed)
    raw = _maps(n, seed) * rng.uniform(0.5, 8, (n, 1, 1)) - rng.uniform(-1, 4, (n, 1, 1))
    counts = 1 + np.arange(n) % 2
    corners = np.sort(rng.integers(0, SIZE, (int(counts.sum()), 2, 2)), axis=1)  # (k, [lo, hi], [x, y])
    boxes = corners.reshape(-1, 4)
    np.savez(path, cams=raw, gt_boxes_flat=boxes, gt_box_counts=counts)
    return path, raw


@pytest.mark.parametrize(("normalization", "extra"), [("max", []), ("pas", []), ("ivr", ["--percentile", "0.3"])])
def test_npz_raw_maps_are_normalised_like_the_library(tmp_path, capsys, normalization, extra):
    from wsol.metrics import normalize_scoremaps

    npz, raw = _raw_npz(tmp_path / "raw.npz")
    out = tmp_path / "flag.json"
    code, stdout, _ = _run(["--npz", str(npz), "--normalization", normalization, *extra,
                            "--cam-curve-interval", "0.01", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0 and f"raw maps normalised by {normalization}" in stdout
    percentile = float(extra[1]) if extra else 0.6
    prepared = tmp_path / "prepared.npz"
    with np.load(npz) as data:
        np.savez(prepared, **{**data, "cams": normalize_scoremaps(raw, normalization, percentile)})
    expected_out = tmp_path / "prepared.json"
    assert _run(["--npz", str(prepared), "--cam-curve-interval", "0.01", "--out", str(expected_out)], capsys)[0] == 0
    result, expected = json.loads(out.read_text()), json.loads(expected_out.read_text())
    for key in ("MaxBoxAcc", "MaxBoxAccV2"):
        assert result[key] == expected[key], key
        assert result["curves"][key] == expected["curves"][key], key
    assert result["normalization"] == {"method": normalization, "percentile": 0.3 if extra else None}
    assert expected["normalization"] == {"method": None, "percentile": None}


def _two_scale_npz(path: Path) -> Path:
    """Two 32 px maps whose object box (value ``box``) sits above a large halo and below a one-pixel peak.

    Image 0, raw: border -1, halo 0.2, box 0.4, peak 1. Image 1: border 0, halo 0.6, box 0.7, peak 1. A box is
    found exactly when halo <= tau < box. Min-max puts image 0 at halo 0.6, box 0.7 — the same window as image 1,
    so one tau finds both boxes (100 at every IoU). Max keeps image 0 at 0.2 / 0.4: the windows are disjoint and
    the best shared tau finds one of the two boxes (50).
    """
    cams = np.empty((2, SIZE, SIZE))
    for i, (border, halo, box) in enumerate(((-1.0, 0.2, 0.4), (0.0, 0.6, 0.7))):
        cams[i] = border
        cams[i, 1:-1, 1:-1] = halo  # bounding box 30 x 30: IoU 64 / 900 with the GT box
        cams[i, 12:20, 12:20] = box
        cams[i, 15, 15] = 1.0  # the peak alone is a 1 px box
    np.savez(path, cams=cams, gt_boxes_flat=np.array([[12, 12, 19, 19]] * 2), gt_box_counts=np.array([1, 1]))
    return path


def test_two_normalisations_give_different_maxboxaccv2_by_hand(tmp_path, capsys):
    npz = _two_scale_npz(tmp_path / "two.npz")
    values = {}
    for normalization in ("minmax", "max"):
        out = tmp_path / f"{normalization}.json"
        args = ["--npz", str(npz), "--normalization", normalization, "--cam-curve-interval", "0.01"]
        assert _run([*args, "--out", str(out)], capsys)[0] == 0
        values[normalization] = json.loads(out.read_text())["MaxBoxAccV2"]
    assert values["minmax"]["value"] == 100.0 and set(values["minmax"]["per_iou"].values()) == {100.0}
    assert values["max"]["value"] == 50.0 and set(values["max"]["per_iou"].values()) == {50.0}
    assert 0.6 <= values["minmax"]["best_cam_threshold"]["50"] < 0.7


def test_raw_folder_maps_with_nan_or_inf_become_zero_maps_with_the_warning(tmp_path, capsys):
    from wsol.metrics import normalize_scoremaps

    rng = np.random.default_rng(6)
    raw = _maps(5, seed=6) * 6 - rng.uniform(0, 3, (5, 1, 1))
    meta, scoremaps, ids, boxes, _ = _write_box_split(tmp_path, raw)
    broken = raw.astype(np.float32)
    broken[1, 3, 4], broken[3, 0, 0] = np.nan, np.inf
    np.save(scoremaps / f"{ids[1]}.npy", broken[1])
    np.save(scoremaps / f"{ids[3]}.npy", broken[3])
    out = tmp_path / "r.json"
    code, _, stderr = _run(["--metadata", str(meta), "--scoremaps", str(scoremaps), "--normalization", "pas",
                            "--cam-curve-interval", "0.01", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0
    assert "warning: 2 score map(s) constant, with NaN/inf or all zero after pas normalisation" in stderr
    assert ids[1] in stderr and ids[3] in stderr
    result = json.loads(out.read_text())
    assert result["degenerate_scoremaps"] == {"count": 2, "image_ids": [ids[1], ids[3]]}
    expected_maps = normalize_scoremaps(broken, "pas")
    assert not expected_maps[[1, 3]].any()
    acc = BoxAccumulator(0.01)
    acc.update(expected_maps, boxes)
    assert result["MaxBoxAccV2"] == json.loads(json.dumps(acc.compute().to_dict()["MaxBoxAccV2"]))

    # The same raw folder without the flag is refused, naming the file, as before.
    code, _, stderr = _run(["--metadata", str(meta), "--scoremaps", str(scoremaps)], capsys)
    assert code == 2 and stderr.startswith("wsol evaluate: error: ") and ".npy" in stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--normalization", "softmax"], "--normalization must be one of minmax, max, pas, ivr, got 'softmax'"),
        (["--normalization", "ivr", "--percentile", "1.5"], "--percentile must lie in [0, 1), got 1.5"),
        (["--normalization", "max", "--percentile", "-0.1"], "--percentile must lie in [0, 1), got -0.1"),
    ],
)
def test_bad_normalization_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    npz, _ = _raw_npz(tmp_path / "raw.npz", n=2)
    code, _, stderr = _run(["--npz", str(npz), *flags], capsys)
    assert code == 2
    assert stderr == f"wsol evaluate: error: {message}\n"


def test_raw_npz_without_the_flag_is_refused_naming_the_file(tmp_path, capsys):
    npz, _ = _raw_npz(tmp_path / "raw.npz", n=2)
    code, _, stderr = _run(["--npz", str(npz)], capsys)
    assert code == 2 and stderr.startswith("wsol evaluate: error: ")
    assert f"{npz}[cams][0]" in stderr and "outside [0, 1]" in stderr
