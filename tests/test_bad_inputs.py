"""Bad input ends in one ValueError whose message names the culprit, never a traceback or a wrong number.

One table: each row builds its input on the fly, calls a public entry point and expects a message fragment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsol.metrics import BoxAccumulator, cam_thresholds, check_normalization, normalize_scoremaps


def _box_update(boxes: list[list[int]], size: int = 8) -> None:
    BoxAccumulator(0.01).update(np.zeros((1, size, size)), [np.array(boxes)])


def _checkpoint(tmp: Path, content: bytes) -> None:
    from wsol.methods.checkpoint import load_checkpoint

    path = tmp / "model.ckpt"
    path.write_bytes(content)
    load_checkpoint(path)


def _image(tmp: Path, content: bytes) -> None:
    from wsol.data._io import load_rgb

    path = tmp / "broken.jpg"
    path.write_bytes(content)
    load_rgb(path)


def _truncated_jpeg(tmp: Path) -> None:
    from PIL import Image

    from wsol.data._io import load_rgb

    path = tmp / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    load_rgb(path)


def _npz(tmp: Path, **arrays: np.ndarray) -> None:
    from wsol.evaluation import NpzSource

    path = tmp / "maps.npz"
    np.savez(path, cams=np.zeros((3, 8, 8)), **arrays)
    NpzSource(path)


def _tiny_imagenet(tmp: Path, edit: Callable[[Path], None]) -> None:
    from dataset_fixtures import write_tiny_imagenet

    from wsol.data import read_dataset

    write_tiny_imagenet(tmp / "tin", per_class=1)
    edit(tmp / "tin")
    read_dataset("tiny_imagenet", tmp / "tin", "train")


ROWS: list[tuple[str, Callable[[Path], object], str]] = [
    (
        "empty training annotation file",
        lambda t: _tiny_imagenet(t, lambda r: (r / "train/n00000002/n00000002_boxes.txt").write_text("")),
        "n00000002_boxes.txt: no annotation lines",
    ),
    (
        "non-UTF-8 annotation file",
        lambda t: _tiny_imagenet(t, lambda r: (r / "wnids.txt").write_bytes(b"n0000\xff0001\n")),
        "wnids.txt: not UTF-8 text",
    ),
    ("0-byte JPEG", lambda t: _image(t, b""), "broken.jpg cannot be read (empty, truncated or not an image)"),
    ("text as a JPEG", lambda t: _image(t, b"GIF? no"), "broken.jpg cannot be read"),
    ("truncated JPEG", _truncated_jpeg, "cut.jpg cannot be read"),
    ("npz ids too short", lambda t: _npz(t, image_ids=np.array(["a", "b"])), "'image_ids' has 2 entries for 3 maps"),
    ("npz ids repeated", lambda t: _npz(t, image_ids=np.array(["a", "b", "a"])), "'image_ids' repeats 'a'"),
    ("interval 1e-9 (would need tens of GB)", lambda t: cam_thresholds(1e-9), "cam_curve_interval must be >= 0.0001"),
    ("interval 0", lambda t: cam_thresholds(0.0), "cam_curve_interval must lie in (0, 1)"),
    (
        "IoU threshold 0",
        lambda t: BoxAccumulator(0.01, iou_thresholds=(0, 50)),
        "iou_thresholds must be integers in (0, 100]",
    ),
    ("IoU threshold 150", lambda t: BoxAccumulator(0.01, iou_thresholds=(50, 150)), "iou_thresholds must be integers"),
    ("IoU threshold 0.5 (a fraction)", lambda t: BoxAccumulator(0.01, iou_thresholds=(0.5,)), "iou_thresholds must be"),
    ("no IoU threshold", lambda t: BoxAccumulator(0.01, iou_thresholds=(), modes=("MaxBoxAccV2",)), "iou_thresholds"),
    (
        "GT box right of the map",
        lambda t: _box_update([[8, 0, 9, 3]]),
        "GT boxes of image 0 lie wholly outside the 8x8",
    ),
    ("GT box below the map", lambda t: _box_update([[0, 0, 3, 3], [1, 9, 2, 12]]), "[[1, 9, 2, 12]]"),
    ("negative GT box", lambda t: _box_update([[-1, 0, 3, 3]]), "GT boxes of image 0: negative coordinates"),
    ("unknown normalisation", lambda t: check_normalization("softmax", 0.6), "normalization must be one of"),
    ("IVR percentile 1", lambda t: normalize_scoremaps(np.eye(3), "ivr", 1.0), "percentile must lie in [0, 1)"),
    ("0-byte checkpoint", lambda t: _checkpoint(t, b""), "model.ckpt is empty (0 bytes)"),
    ("text as a checkpoint", lambda t: _checkpoint(t, b"hello"), "model.ckpt cannot be read"),
    ("truncated zip checkpoint", lambda t: _checkpoint(t, b"PK\x03\x04\x14\x00"), "model.ckpt cannot be read"),
]


@pytest.mark.parametrize(("case", "call", "fragment"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_gets_one_line_naming_the_culprit(tmp_path, case, call, fragment):
    with pytest.raises(ValueError) as err:
        call(tmp_path)
    message = str(err.value)
    assert fragment in message, f"{case}: {message!r}"
    assert "\n" not in message and "Traceback" not in message


def test_gt_boxes_on_the_last_pixel_are_accepted():
    acc = BoxAccumulator(0.5, modes=("MaxBoxAccV2",))
    scoremap = np.zeros((1, 8, 8))
    scoremap[0, 7, 7] = 1.0
    acc.update(scoremap, [np.array([[7, 7, 7, 7]])])
    assert acc.compute().modes["MaxBoxAccV2"].value == 100.0


def test_16_bit_images_are_scaled_not_saturated(tmp_path):
    from PIL import Image

    from wsol.data._io import load_rgb

    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    rgb = load_rgb(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))


def _metadata(tmp: Path, ids: bytes = b"img1\n", loc: bytes = b"img1,1,1,3,3\n", npy: bytes | None = None) -> list[str]:
    meta, maps = tmp / "meta", tmp / "maps"
    meta.mkdir()
    maps.mkdir()
    (meta / "image_ids.txt").write_bytes(ids)
    (meta / "class_labels.txt").write_text("img1,0\n")
    (meta / "image_sizes.txt").write_text("img1,8,8\n")
    (meta / "localization.txt").write_bytes(loc)
    if npy is None:
        np.save(maps / "img1.npy", np.zeros((8, 8)))
    else:
        (maps / "img1.npy").write_bytes(npy)
    return ["evaluate", "--metadata", str(meta), "--scoremaps", str(maps), "--out", str(tmp / "out.json")]


def _npz_file(tmp: Path, content: bytes) -> list[str]:
    (tmp / "maps.npz").write_bytes(content)
    return ["evaluate", "--npz", str(tmp / "maps.npz"), "--out", str(tmp / "out.json")]


def _npz_box_outside(tmp: Path) -> list[str]:
    maps = np.zeros((2, 16, 16))
    maps[:, 2:6, 2:6] = 1.0
    boxes = np.array([[2, 2, 5, 5], [20, 20, 25, 25]])
    path = tmp / "maps.npz"
    np.savez(path, cams=maps, gt_boxes_flat=boxes, gt_box_counts=np.array([1, 1]), image_ids=np.array(["a", "b"]))
    return ["evaluate", "--npz", str(path), "--out", str(tmp / "out.json")]


CLI_ROWS: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("--npz GT box outside the map", _npz_box_outside, "image 'b': GT boxes of image 0 lie wholly outside"),
    ("empty metadata", lambda t: _metadata(t, ids=b""), "image_ids.txt lists no images"),
    ("non-UTF-8 metadata", lambda t: _metadata(t, ids=b"img\xff1\n"), "image_ids.txt: not UTF-8 text"),
    ("0-byte .npy", lambda t: _metadata(t, npy=b""), "score map of 'img1' could not be read"),
    ("text as .npy", lambda t: _metadata(t, npy=b"hello"), "score map of 'img1' could not be read"),
    (
        "absolute mask path",
        lambda t: _metadata(t, loc=b"img1,/etc/shadow,\n"),
        "mask path '/etc/shadow' must be relative",
    ),
    ("mask path climbing out", lambda t: _metadata(t, loc=b"img1,../x.png,\n"), "must be relative, inside"),
    ("0-byte .npz", lambda t: _npz_file(t, b""), "maps.npz: not a readable npz file"),
    ("truncated .npz", lambda t: _npz_file(t, b"PK\x03\x04\x14\x00\x00"), "maps.npz: not a readable npz file"),
    (
        "--out is a file",
        lambda t: [*_metadata(t)[:-1], str(t / "meta" / "image_ids.txt")],
        "image_ids.txt is a file; a folder is expected",
    ),
]


@pytest.mark.parametrize(("case", "argv", "fragment"), CLI_ROWS, ids=[r[0] for r in CLI_ROWS])
def test_cli_bad_input_is_one_line(tmp_path, capsys, case, argv, fragment):
    from wsol.cli import main

    args = argv(tmp_path)
    assert main(args) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith(f"wsol {args[0]}: error: ") and fragment in last, f"{case}: {err}"
    assert not any("Traceback" in line for line in err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200), which=st.sampled_from(["image_ids.txt", "localization.txt", "image_sizes.txt"]))
def test_fuzzed_metadata_files_end_in_one_clear_error(tmp_path, content, which):
    import tempfile

    from wsol.evaluation import MetadataSource

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    args = _metadata(folder)
    (folder / "meta" / which).write_bytes(content)
    try:
        source = MetadataSource(args[2], args[4])
        for i in range(len(source.image_ids)):
            source.load(i)
    except (ValueError, FileNotFoundError, KeyError) as err:
        assert "\n" not in str(err).strip()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_fuzzed_npz_and_images_end_in_one_clear_error(tmp_path, content):
    from wsol.data._io import load_rgb
    from wsol.evaluation import NpzSource

    path = tmp_path / "fuzz.npz"
    path.write_bytes(content)
    with pytest.raises((ValueError, KeyError)):
        NpzSource(path)
    image = tmp_path / "fuzz.png"
    image.write_bytes(content)
    with pytest.raises(ValueError, match="fuzz.png cannot be read"):
        load_rgb(image)
