"""``wsol cams`` (scored by ``wsol evaluate``) and ``wsol leaderboard`` on a tiny generated set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.cams import class_mapping, imagenet_class_indices
from wsol.cli import main
from wsol.commands.arguments import parse_data_spec

DATA_OPTIONS = json.dumps({"train_per_class": 2, "val_per_class": 4, "image_size": 32, "num_classes": 3, "clutter": 2})
MODEL = ["--backbone-kwargs", json.dumps({"width": 8}), "--seed", "3"]
COMMON = ["--data", "synthetic", "--data-options", DATA_OPTIONS, "--image-size", "64"]


def _evaluate(tmp_path: Path, run: Path, *extra: str) -> dict:
    out = tmp_path / f"{run.name}_eval.json"
    args = ["evaluate", "--metadata", str(run / "metadata"), "--scoremaps", str(run / "scoremaps")]
    assert main([*args, *extra, "--out", str(out), "--no-progress"]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("board")
    methods = "cam,gradcam,gradcampp,xgradcam,layercam,scorecam,eigencam"
    argv = ["leaderboard", "--cam-methods", methods, "--backbones", "resnet10", *MODEL, *COMMON, "--out", str(out)]
    assert main([*argv, "--overlay-images", "3"]) == 0
    return out


@pytest.mark.slow
def test_leaderboard_writes_tables_and_pictures(board: Path) -> None:
    rows = list(csv.DictReader((board / "leaderboard.csv").open()))
    assert [r["method"] for r in rows] and len(rows) == 7
    assert {r["method"] for r in rows} == {
        "cam",
        "gradcam",
        "gradcampp",
        "xgradcam",
        "layercam",
        "scorecam",
        "eigencam",
    }
    scores = [float(r["MaxBoxAccV2"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # ranked
    for r in rows:
        ious = [float(r[f"IoU{t}"]) for t in (30, 50, 70)]
        assert float(r["MaxBoxAccV2"]) == pytest.approx(np.mean(ious))
        assert ious[0] >= ious[1] >= ious[2]
        assert 0 <= float(r["PxAP"]) <= 100 and float(r["seconds_per_image"]) > 0
        assert int(r["num_images"]) == 12 and r["model"] == "resnet10" and r["dataset"] == "synthetic"
    entries = json.loads((board / "leaderboard.json").read_text())["entries"]
    curves = entries[0]["boxes"]["curves"]["MaxBoxAccV2"]["50"]
    assert len(curves) == 1000 and max(curves) == pytest.approx(entries[0]["IoU50"])
    md = (board / "leaderboard.md").read_text()
    assert "| 1 | synthetic | resnet10 |" in md and "scorecam" in md and "curves__resnet10__synthetic.png" in md
    for picture in ("curves__resnet10__synthetic.png", "overlays__resnet10__synthetic.png"):
        assert (board / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cams_output_is_scored_by_evaluate_like_the_leaderboard(tmp_path: Path, board: Path) -> None:
    run = tmp_path / "gradcampp"
    argv = ["cams", "--backbone", "resnet10", *MODEL, "--cam-method", "gradcampp", *COMMON, "--out", str(run)]
    assert main(argv) == 0
    ids = (run / "metadata" / "image_ids.txt").read_text().split()
    assert len(ids) == 12 and (run / "class_names.txt").read_text().split() == ["disc", "square", "triangle"]
    first = np.load(run / "scoremaps" / f"{ids[0]}.npy")
    assert first.shape == (64, 64) and first.dtype == np.float64 and first.min() == 0 and first.max() == 1
    scored = _evaluate(tmp_path, run, "--predictions", str(run / "predictions.txt"))
    row = next(e for e in json.loads((board / "leaderboard.json").read_text())["entries"] if e["method"] == "gradcampp")
    assert scored["MaxBoxAccV2"]["value"] == pytest.approx(row["MaxBoxAccV2"], abs=1e-9)
    assert scored["MaxBoxAcc"]["value"] == pytest.approx(row["MaxBoxAcc"], abs=1e-9)
    assert scored["Top1Loc"]["MaxBoxAccV2"]["value"] == pytest.approx(row["Top1Loc"], abs=1e-9)
    info = json.loads((run / "cams.json").read_text())
    assert info["num_images"] == 12 and info["top1_acc"] == pytest.approx(row["top1_acc"])


def test_cams_mask_metadata_gives_the_leaderboard_pxap(tmp_path: Path, board: Path) -> None:
    run = tmp_path / "cam_masks"
    argv = [
        "cams",
        "--backbone",
        "resnet10",
        *MODEL,
        "--cam-method",
        "cam",
        *COMMON,
        "--out",
        str(run),
        "--gt",
        "masks",
    ]
    assert main([*argv, "--dtype", "float32"]) == 0
    first = (run / "metadata" / "localization.txt").read_text().splitlines()[0].split(",")
    assert first[1].startswith("masks/") and (run / "metadata" / first[1]).is_file()
    scored = _evaluate(tmp_path, run)
    row = next(e for e in json.loads((board / "leaderboard.json").read_text())["entries"] if e["method"] == "cam")
    # float32 storage may move a pixel across a 1e-3 bin edge, hence the tolerance.
    assert scored["PxAP"]["value"] == pytest.approx(row["PxAP"], abs=0.05)


def test_cams_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["cams", "--backbone", "resnet10", *MODEL, *COMMON, "--out", str(tmp_path)]
    assert main([*argv, "--cam-method", "nope"]) == 2
    assert "unknown CAM method 'nope'" in capsys.readouterr().err
    assert main(["cams", "--backbone", "resnet10", "--cam-method", "cam", "--data", str(tmp_path), "--out", "x"]) == 2
    assert "cannot tell the layout" in capsys.readouterr().err


def test_imagenet_class_mapping(tiny_imagenet_root: Path) -> None:
    assert imagenet_class_indices(["n01443537", "n01882714", "n02099601", "n07753592"]) == [1, 105, 207, 954]
    with pytest.raises(KeyError, match="n00000000"):
        imagenet_class_indices(["n00000000"])
    spec = parse_data_spec(str(tiny_imagenet_root))
    assert spec.reader == "tiny_imagenet"
    dataset = spec.open()
    expected = [1, 105, 207, 281, 291, 301, 323, 386, 779, 954]
    assert sorted(class_mapping(dataset, 1000).tolist()) == expected
    assert torch.equal(class_mapping(dataset, 10), torch.arange(10))
    with pytest.raises(ValueError, match="cannot be matched|can be matched"):
        class_mapping(dataset, 7)


def test_cams_and_leaderboard_follow_the_normalization(tmp_path: Path, board: Path) -> None:
    from wsol.cams import create_cam, load_cam_model
    from wsol.cams.runner import protocol_loader
    from wsol.metrics import prepare_scoremaps_numpy

    flags = ["--normalization", "ivr", "--percentile", "0.3"]
    run = tmp_path / "cam_ivr"
    assert (
        main(["cams", "--backbone", "resnet10", *MODEL, "--cam-method", "cam", *COMMON, "--out", str(run), *flags]) == 0
    )
    info = json.loads((run / "cams.json").read_text())
    assert info["protocol"]["normalization"] == {"method": "ivr", "percentile": 0.3}
    # By hand: the same model and images, raw CAMs of the GT class through the cv2 pipeline with IVR at 0.3.
    dataset = parse_data_spec("synthetic", "val", json.loads(DATA_OPTIONS)).open()
    model = load_cam_model(backbone="resnet10", num_classes=3, backbone_kwargs={"width": 8}, seed=3)
    batch = next(iter(protocol_loader(dataset, model, 64, "pil", 32)))
    raw = create_cam("cam", model.module)(batch["image"], batch["label"]).maps.numpy()
    expected = prepare_scoremaps_numpy(raw, (64, 64), "ivr", 0.3)
    for i, image_id in enumerate(batch["image_id"]):
        np.testing.assert_allclose(np.load(run / "scoremaps" / f"{image_id}.npy"), expected[i], rtol=0, atol=1e-12)
    scored = _evaluate(tmp_path, run, "--predictions", str(run / "predictions.txt"))
    assert scored["normalization"] == {"method": None, "percentile": None}  # cams wrote score maps

    out = tmp_path / "board_ivr"
    argv = [
        "leaderboard",
        "--cam-methods",
        "cam",
        "--backbones",
        "resnet10",
        *MODEL,
        *COMMON,
        "--out",
        str(out),
        *flags,
    ]
    assert main([*argv, "--overlay-images", "1"]) == 0
    payload = json.loads((out / "leaderboard.json").read_text())
    assert payload["config"]["normalization"] == {"method": "ivr", "percentile": 0.3}
    assert "per-image ivr (percentile 0.3)" in (out / "leaderboard.md").read_text()
    row = payload["entries"][0]
    assert scored["MaxBoxAccV2"]["value"] == pytest.approx(row["MaxBoxAccV2"], abs=1e-9)
    assert scored["MaxBoxAcc"]["value"] == pytest.approx(row["MaxBoxAcc"], abs=1e-9)
    minmax = next(e for e in json.loads((board / "leaderboard.json").read_text())["entries"] if e["method"] == "cam")
    assert json.loads((board / "leaderboard.json").read_text())["config"]["normalization"]["method"] == "minmax"
    # Same images, other score maps: the BoxAcc(tau) curves move (their maxima may coincide on 12 images).
    assert row["boxes"]["curves"]["MaxBoxAccV2"] != minmax["boxes"]["curves"]["MaxBoxAccV2"]


@pytest.mark.parametrize("command", ["cams", "leaderboard"])
def test_bad_normalization_flags_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, command) -> None:
    model = ["--backbone", "resnet10"] if command == "cams" else ["--backbones", "resnet10"]
    argv = [command, *model, *MODEL, *COMMON, "--out", str(tmp_path / "x")]
    argv += ["--cam-method", "cam"] if command == "cams" else ["--cam-methods", "cam"]
    assert main([*argv, "--normalization", "softmax"]) == 2
    expected = f"wsol {command}: error: --normalization must be one of minmax, max, pas, ivr, got 'softmax'\n"
    assert capsys.readouterr().err == expected
    assert main([*argv, "--normalization", "ivr", "--percentile", "2"]) == 2
    assert capsys.readouterr().err == f"wsol {command}: error: --percentile must lie in [0, 1), got 2.0\n"
    assert not (tmp_path / "x").exists()


def test_cams_refuses_an_out_with_another_runs_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    argv = ["cams", "--backbone", "resnet10", *MODEL, "--cam-method", "cam", *COMMON, "--out", str(run)]
    assert main(argv) == 0
    assert json.loads((run / "cams.json").read_text())["status"] == "complete"
    stale = run / "scoremaps" / "stale.npy"
    np.save(stale, np.zeros((2, 2)))
    mtime = (run / "cams.json").stat().st_mtime_ns
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds the outputs of a run (scoremaps, metadata, cams.json, predictions.txt)" in err
    assert stale.exists() and (run / "cams.json").stat().st_mtime_ns == mtime  # nothing touched
    # A run that died midway leaves its manifest "running": wsol evaluate refuses its maps.
    info = json.loads((run / "cams.json").read_text())
    (run / "cams.json").write_text(json.dumps({**info, "status": "running"}, indent=2))
    ev = ["evaluate", "--metadata", str(run / "metadata"), "--scoremaps", str(run / "scoremaps")]
    assert main([*ev, "--out", str(tmp_path / "e.json")]) == 2
    assert "did not finish; rerun it with --overwrite" in capsys.readouterr().err
    (run / "notes.txt").write_text("mine")
    assert main([*argv, "--overwrite"]) == 0
    assert not stale.exists() and (run / "notes.txt").read_text() == "mine"  # only its own outputs replaced


def test_cams_refuses_an_image_id_that_climbs_out(tmp_path: Path) -> None:
    from wsol.commands.cams import _relative_id

    assert _relative_id("n01/val_3.JPEG") == "n01/val_3.JPEG"
    for bad in ("../evil", "a/../../b", "/etc/passwd", "a\\..\\b"):
        with pytest.raises(ValueError, match="cannot name a file inside OUT/scoremaps"):
            _relative_id(bad)
