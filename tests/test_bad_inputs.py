"""Bad input ends in one ValueError whose message names the culprit, never a traceback or a wrong number.

One table: each row builds its input on the fly, calls a public entry point and expects a message fragment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
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


def _row(overrides: dict, register: bool = False) -> None:
    from wsol.study import MethodSpec, register_row

    row = MethodSpec("myrow", None, {"default": overrides})
    if register:
        register_row(row)


def _needs_plugin(tmp: Path) -> list[str]:
    """A checkpoint of a method and backbone registered by a plugin that is not loaded."""
    import torch

    path = tmp / "plugged.ckpt"
    torch.save(
        {
            "wsol_method": "mywsol.method.AreaCAM",
            "wsol_needs": {
                "method": {"name": "AreaCAM", "plugin": "mywsol"},
                "backbone": {"name": "tinynet", "kwargs": {"width": 8}, "plugin": "mywsol"},
            },
            "hyper_parameters": {"backbone": "tinynet", "num_classes": 3},
            "state_dict": {},
        },
        path,
    )
    return ["export", "--checkpoint", str(path), "--out", str(tmp / "onnx")]


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
    (
        "graph metadata: malformed JSON",
        lambda t: _props(t, "wsol.preprocessing", '{"size": [32'),
        "model.onnx: metadata_props entry 'wsol.preprocessing' is not valid JSON",
    ),
    (
        "graph metadata: a 224 px size on a 32 px graph",
        lambda t: _props(t, "wsol.preprocessing", '{"size": [224, 224]}'),
        "'wsol.preprocessing' says size [224, 224], but the graph's input is",
    ),
    (
        "graph metadata: more class names than logits",
        lambda t: _props(t, "wsol.num_classes", "5"),
        "'wsol.num_classes' says 5 classes, but the graph's logits are",
    ),
    (
        "study row with a misspelt key",
        lambda t: _row({"modle": {"label_smoothing": 0.1}}),
        "study row 'myrow', variant 'default': unknown key 'modle'; a variant overrides method, model,",
    ),
    (
        "study row with a misspelt method argument",
        lambda t: _row({"model": {"label_smothing": 0.1}}, register=True),
        "study row 'myrow', variant 'default': 'label_smothing' is not an argument of CAM",
    ),
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


def _npz_bad_mask(tmp: Path) -> list[str]:
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[1, 2:4, 2:4] = 7  # neither 0, 1 nor 255
    np.savez(tmp / "maps.npz", cams=np.random.default_rng(0).random((2, 8, 8)), gt_masks=masks)
    return ["evaluate", "--npz", str(tmp / "maps.npz"), "--no-progress", "--out", str(tmp / "out")]


def _npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """``array`` as ``.npy`` bytes whose header states ``shape`` (default: the array's own)."""
    import io

    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": shape or array.shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + np.ascontiguousarray(array).tobytes()


def _box_maps(n: int = 4, size: int = 16) -> dict[str, np.ndarray]:
    """Maps with a hot square and GT boxes, the first half on the square (hits), the rest beside it (misses)."""
    maps = np.zeros((n, size, size))
    maps[:, 2:6, 2:6] = 1.0
    boxes = np.array([[2, 2, 6, 6] if i < n // 2 else [9, 9, 14, 14] for i in range(n)])
    return {"cams": maps, "gt_boxes_flat": boxes, "gt_box_counts": np.ones(n, np.int64)}


def _crafted_npz(tmp: Path, members: list[tuple[str, bytes]], *extra: str) -> list[str]:
    """An uncompressed zip of ``members`` (name, bytes), with valid CRCs: only the crafted content is wrong."""
    import zipfile

    path = tmp / "maps.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return ["evaluate", "--npz", str(path), "--no-progress", *extra, "--out", str(tmp / "out")]


def _claims_more(tmp: Path, shape: tuple[int, ...], *extra: str) -> list[str]:
    case = _box_maps()
    members = [(f"{k}.npy", _npy_bytes(v, shape if k == "cams" else None)) for k, v in case.items()]
    return _crafted_npz(tmp, members, *extra)


def _pointing_elsewhere(tmp: Path) -> list[str]:
    """The central directory's entry for cams.npy points at the local header of a decoy member."""
    import zipfile

    case = _box_maps()
    decoy = np.zeros_like(case["cams"])
    decoy[:, 10:14, 10:14] = 1.0
    args = _crafted_npz(
        tmp, [*[(f"{k}.npy", _npy_bytes(v)) for k, v in case.items()], ("decoy.npy", _npy_bytes(decoy))]
    )
    path = Path(args[2])
    with zipfile.ZipFile(path) as archive:
        cams, decoy_offset = archive.getinfo("cams.npy"), archive.getinfo("decoy.npy").header_offset
        directory = archive.start_dir
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02", directory)  # the first central entry: cams.npy, written first
    assert data[entry + 46 : entry + 46 + len(cams.filename)] == b"cams.npy"
    data[entry + 42 : entry + 46] = decoy_offset.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return args


def _both_names(tmp: Path) -> list[str]:
    case = _box_maps()
    hits = case["cams"].copy()
    hits[:, 9:15, 9:15] = 1.0  # 'cams' (what np.load(...)["cams"] gives) differs from 'cams.npy'
    members = [(f"{k}.npy", _npy_bytes(v)) for k, v in case.items()]
    return _crafted_npz(tmp, [*members, ("cams", _npy_bytes(hits))])


def _upsample_args(tmp: Path, cams: np.ndarray, upsample: str, sizes: bool = True) -> list[str]:
    path = tmp / "maps.npz"
    n = len(cams)
    extra = {"image_sizes": np.full((n, 2), 32)} if sizes else {}
    np.savez(path, cams=cams, gt_boxes_flat=np.tile([[1, 1, 9, 9]], (n, 1)), gt_box_counts=np.ones(n, int), **extra)
    return ["evaluate", "--npz", str(path), "--upsample", upsample, "--no-progress", "--out", str(tmp / "out")]


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def _stage_config(tmp: Path) -> Path:
    import yaml

    demo = {"num_classes": 2, "train_per_class": 2, "val_per_class": 1, "image_size": 32}
    config = {
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False, "logger": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp / "run")},
        "model": {"class_path": "wsol.methods.CAM", "init_args": {
            "backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}}},
        "data": {"class_path": "wsol.data.WSOLDataModule", "init_args": {
            "dataset": "synthetic", "image_size": 32, "batch_size": 2, "train_options": demo, "val_options": demo}},
    }  # fmt: skip
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp / "config.yaml"


def _pickled_checkpoint(tmp: Path, stage: str) -> list[str]:
    import torch

    torch.save({"state_dict": {}, "epoch": 0, "payload": _Payload()}, tmp / "evil.ckpt")
    extra = ["--out", str(tmp / "out")] if stage == "predict" else []
    return [stage, "--config", str(_stage_config(tmp)), "--ckpt_path", str(tmp / "evil.ckpt"), *extra]


def _cams_on_cut_jpeg(tmp: Path) -> list[str]:
    from dataset_fixtures import write_tiny_imagenet

    write_tiny_imagenet(tmp / "tin", per_class=1)
    image = sorted((tmp / "tin" / "val" / "images").iterdir())[0]
    image.write_bytes(image.read_bytes()[:300])
    return ["cams", "--backbone", "resnet10", "--backbone-kwargs", '{"width": 8}', "--cam-method", "cam",
            "--data", f"tiny_imagenet={tmp / 'tin'}", "--image-size", "32", "--out", str(tmp / "out")]  # fmt: skip


_EXPORTED: dict[str, Path] = {}


def _exported(tmp: Path, dynamic: bool = False) -> Path:
    """A copy in ``tmp`` of a tiny exported graph (32 px, 3 classes) and its sidecar, exported once per session."""
    import shutil
    import tempfile

    key = "dynamic" if dynamic else "static"
    if key not in _EXPORTED:
        from wsol.onnx import build_backbone_model, export_onnx

        model, _ = build_backbone_model("resnet10", num_classes=3, backbone_kwargs={"width": 8}, seed=0)
        folder = Path(tempfile.mkdtemp())
        _EXPORTED[key] = export_onnx(model, folder / "model.onnx", image_size=(32, 32), parity=False,
                                     dynamic_size=dynamic).path  # fmt: skip
    for suffix in (".onnx", ".json"):
        shutil.copy(_EXPORTED[key].with_suffix(suffix), tmp / f"model{suffix}")
    return tmp / "model.onnx"


def _bench(tmp: Path, sidecar: str | None = None) -> list[str]:
    model = _exported(tmp)
    if sidecar is not None:
        model.with_suffix(".json").write_text(sidecar)
    return ["bench", "onnx", "--model", str(model), "--out", str(tmp / "bench"), "--batch-sizes", "1",
            "--iters", "1", "--min-time-s", "0", "--warmup-iters", "0", "--warmup-s", "0", "--parity-images", "1",
            "--jetson", "off"]  # fmt: skip


def _stale_sidecar(tmp: Path) -> list[str]:
    args = _bench(tmp)
    sidecar = tmp / "model.json"
    sidecar.write_text(sidecar.read_text().replace('"sha256": "', '"sha256": "0'))
    return args


def _props(tmp: Path, key: str, value: str) -> None:
    import onnx

    from wsol.onnx import read_metadata_props

    path = _exported(tmp)
    proto = onnx.load(str(path))
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = value
    onnx.save(proto, str(path))
    read_metadata_props(path)


CLI_ROWS: list[tuple[str, Callable[[Path], list[str]], str]] = [
    (
        "--npz GT box outside the map",
        _npz_box_outside,
        "maps.npz[gt_boxes_flat]: image 'b': GT boxes of image 0 lie wholly outside",
    ),
    ("--npz GT mask of values 7", _npz_bad_mask, "maps.npz[gt_masks]: image '1': "),
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
    (
        "npz header claims more maps than stored",
        lambda t: _claims_more(t, (5, 16, 16)),
        "'cams': the .npy header claims shape (5, 16, 16) of float64 (10240 bytes), but the member stores 8192",
    ),
    ("npz header claims wider maps", lambda t: _claims_more(t, (4, 16, 20), "--upsample", "32"), "claims shape"),
    (
        "npz header claims wider maps (minmax)",
        lambda t: _claims_more(t, (4, 20, 16), "--normalization", "minmax"),
        "claims shape (4, 20, 16)",
    ),
    ("npz header claims 10**12 maps", lambda t: _claims_more(t, (10**12, 16, 16)), "claims shape (1000000000000, "),
    (
        "npz directory entry pointing at another member",
        _pointing_elsewhere,
        "maps.npz: 'cams' cannot be read as a .npy array: File name in directory 'cams.npy' and header",
    ),
    ("npz holding cams and cams.npy", _both_names, "maps.npz: holds both 'cams' and 'cams.npy'"),
    ("0x0 maps with --upsample", lambda t: _upsample_args(t, np.zeros((2, 0, 0)), "32"), "is empty (shape (0, 0))"),
    ("--upsample 2", lambda t: _upsample_args(t, np.random.rand(2, 4, 4), "2"), "upsample must be an int >= 16"),
    (
        "npz boxes without image_sizes under --upsample",
        lambda t: _upsample_args(t, np.random.rand(2, 4, 4), "32", sizes=False),
        "--upsample 32 needs 'image_sizes'",
    ),
    *[
        (
            f"pickle-payload checkpoint to {stage}",
            lambda t, s=stage: _pickled_checkpoint(t, s),
            "evil.ckpt: not a plain",
        )
        for stage in ("fit", "validate", "predict")
    ],
    ("wsol cams on a JPEG cut at 300 bytes", _cams_on_cut_jpeg, "val_n00000001_0.JPEG cannot be read"),
    ("bench: a stale sidecar (another graph's sha256)", _stale_sidecar, "model.json: describes another graph"),
    ("bench: a list-valued sidecar", lambda t: _bench(t, "[1, 2]"), "model.json: the sidecar must be a JSON object"),
    ("bench: a malformed sidecar", lambda t: _bench(t, '{"opset": '), "model.json: not a readable JSON sidecar"),
    ("0-byte .npz", lambda t: _npz_file(t, b""), "maps.npz: not a readable npz file"),
    ("truncated .npz", lambda t: _npz_file(t, b"PK\x03\x04\x14\x00\x00"), "maps.npz: not a readable npz file"),
    (
        "checkpoint whose plugin is not loaded",
        _needs_plugin,
        "plugged.ckpt needs plugin mywsol: pass --import mywsol (or set WSOL_PLUGINS=mywsol) (training method",
    ),
    (
        "a plugin that raises on import",
        lambda t: ["backbones", "--import", "plugin_that_raises"],
        "plugin 'plugin_that_raises' (from --import) failed to import: RuntimeError: this plugin is broken on purpose",
    ),
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


@pytest.mark.parametrize("workers", [1, 2])
def test_npz_replaced_by_name_during_a_run_is_still_read_from_the_file_first_opened(tmp_path, workers):
    import os

    from wsol.evaluation import NpzSource, evaluate

    hits = _box_maps(8)
    hits["gt_boxes_flat"][:] = [2, 2, 6, 6]  # every map on its box: 100
    misses = {**hits, "cams": np.roll(hits["cams"], 8, axis=2)}  # every map beside its box: 0
    path = tmp_path / "maps.npz"
    np.savez(path, **hits)
    source = NpzSource(path)
    np.savez(tmp_path / "new.npz", **misses)
    os.replace(tmp_path / "new.npz", path)  # an atomic replace by another writer, mid-run
    result = evaluate(source, cam_curve_interval=0.01, workers=workers)
    assert result.boxes.modes["MaxBoxAccV2"].value == 100.0
    assert evaluate(NpzSource(path), cam_curve_interval=0.01).boxes.modes["MaxBoxAccV2"].value == 0.0


def _fuzzed_archive(path: Path, case: dict[str, np.ndarray], fuzz: dict) -> None:
    """A real npz of ``case`` whose 'cams' member has a random header (shape, dtype, order, data length), maybe a
    second 'cams' member, and maybe a random local-header offset in its central-directory entry."""
    import io
    import warnings
    import zipfile

    cams = case["cams"].astype(fuzz["dtype"])
    data = np.ascontiguousarray(cams).tobytes()
    data = data[: max(0, len(data) + fuzz["cut"])] if fuzz["cut"] < 0 else data + bytes(fuzz["cut"])
    header = {"descr": np.lib.format.dtype_to_descr(cams.dtype), "fortran_order": fuzz["fortran"],
              "shape": fuzz["shape"]}  # fmt: skip
    buffer = io.BytesIO()
    (np.lib.format.write_array_header_1_0 if fuzz["version"] == 1 else np.lib.format.write_array_header_2_0)(
        buffer, header
    )
    members = [("cams.npy", buffer.getvalue() + data)]
    members += [(f"{k}.npy", _npy_bytes(v)) for k, v in case.items() if k != "cams"]
    if fuzz["extra"]:
        members.append((fuzz["extra"], _npy_bytes(case["cams"][::-1].copy())))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        for name, content in members:
            archive.writestr(name, content)
    if fuzz["offset"] is not None:
        raw = bytearray(path.read_bytes())
        entry = raw.index(b"PK\x01\x02")  # the central entry of cams.npy, written first
        raw[entry + 42 : entry + 46] = (fuzz["offset"] % len(raw)).to_bytes(4, "little")
        path.write_bytes(bytes(raw))


_FUZZ = st.fixed_dictionaries(
    {
        "shape": st.one_of(
            st.sampled_from([(4, 16, 16), (4, 8, 32), (4, 16, 8), (3, 16, 16)]),
            st.lists(st.sampled_from([0, 1, 2, 3, 4, 8, 16, 20, 10**12]), max_size=4).map(tuple),
        ),
        "dtype": st.sampled_from(["<f8", "<f4", "<f2", ">f8", "<i4", "|u1"]),
        "fortran": st.booleans(),
        "version": st.sampled_from([1, 2]),
        "cut": st.sampled_from([0, 0, 0, -1, -64, -1024, 7, 512]),
        "extra": st.sampled_from([None, None, None, None, "cams", "cams.npy", "other.npy"]),
        "offset": st.one_of(st.none(), st.none(), st.none(), st.integers(0, 4096)),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fuzz=_FUZZ, normalization=st.sampled_from([None, "minmax"]))
def test_fuzzed_npz_archives_score_what_np_load_reads_or_are_refused_in_one_line(tmp_path, capsys, fuzz, normalization):
    """Random headers, shapes, data lengths, names and offsets in a real archive: ``wsol evaluate --npz`` either
    scores exactly what ``np.load`` reads (the same numbers as for a clean archive of those arrays) or refuses in
    one line; never a third outcome."""
    import json
    import tempfile
    import warnings

    from wsol.cli import main

    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    case = _box_maps()
    case["cams"] = np.random.default_rng(0).random((4, 16, 16)) * case["cams"]
    _fuzzed_archive(folder / "fuzz.npz", case, fuzz)
    rule = ["--normalization", normalization] if normalization else []

    def score(path: Path, name: str) -> tuple[int, dict | None, list[str]]:
        capsys.readouterr()
        out = folder / name
        code = main(["evaluate", "--npz", str(path), "--cam-curve-interval", "0.01", "--no-progress", *rule,
                     "--out", str(out)])  # fmt: skip
        lines = capsys.readouterr().err.strip().splitlines()
        return code, json.loads((out / "metrics.json").read_text()) if code == 0 else None, lines

    code, ours, lines = score(folder / "fuzz.npz", "fuzzed")
    assert code in (0, 2), lines
    event("refused" if code == 2 else "scored")
    if code == 2:
        assert lines and lines[-1].startswith("wsol evaluate: error: ") and "fuzz.npz" in lines[-1], lines
        assert not any("Traceback" in line for line in lines)
        return
    with warnings.catch_warnings():  # scored: np.load must read the same archive, and a clean copy scores the same
        warnings.simplefilter("ignore")
        with np.load(folder / "fuzz.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    np.savez(folder / "clean.npz", **arrays)
    clean_code, clean, _ = score(folder / "clean.npz", "clean")
    assert clean_code == 0
    assert ours["MaxBoxAccV2"] == clean["MaxBoxAccV2"] and ours["curves"] == clean["curves"]
    assert ours["degenerate_scoremaps"] == clean["degenerate_scoremaps"]


def test_limit_options_given_as_integers_stay_integers(tmp_path):
    """``limit_train_batches: 1`` is one batch, not the whole epoch (1.0); fractions stay fractions."""
    from wsol.training.lightning_cli import WSOLCLI

    config = _stage_config(tmp_path)
    text = config.read_text().replace(
        "max_epochs: 1", "max_epochs: 1\n  limit_val_batches: 1\n  limit_test_batches: 0.5"
    )
    config.write_text(text)
    cli = WSOLCLI(
        ["--config", str(config), "--trainer.limit_train_batches", "1", "--trainer.limit_predict_batches", "1.0"]
    )
    trainer = cli.trainer
    assert trainer.limit_train_batches == 1 and isinstance(trainer.limit_train_batches, int)
    assert trainer.limit_val_batches == 1 and isinstance(trainer.limit_val_batches, int)
    assert trainer.limit_test_batches == 0.5
    assert trainer.limit_predict_batches == 1.0 and isinstance(trainer.limit_predict_batches, float)


def test_bench_times_a_dynamic_size_graph_at_its_exported_size_and_appends_after_a_half_written_line(tmp_path, capsys):
    import json

    from wsol.cli import main

    args = _bench(tmp_path)
    _exported(tmp_path, dynamic=True)  # replaces model.onnx and model.json by the --dynamic-size export
    assert main(args) == 0, capsys.readouterr().err
    results = tmp_path / "bench" / "results.jsonl"
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["input_shape"] == [1, 3, 32, 32]
    with results.open("a") as file:
        file.write('{"provider": "cpu", "precis')  # a run killed mid-line
    assert main([*args, "--append"]) == 0, capsys.readouterr().err
    assert "dropped a half-written last line" in capsys.readouterr().out
    assert [json.loads(line)["input_shape"] for line in results.read_text().splitlines()] == [[1, 3, 32, 32]] * 2


def test_metadata_writes_nothing_outside_its_out_folder(tmp_path, capsys):
    from dataset_fixtures import write_tiny_imagenet

    from wsol.cli import main

    write_tiny_imagenet(tmp_path / "tin", per_class=1)
    (tmp_path / "parent").mkdir()
    out = tmp_path / "parent" / "val"
    assert main(["metadata", "--data", f"tiny_imagenet={tmp_path / 'tin'}", "--out", str(out), "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "parent").iterdir()] == ["val"]
    names = ["class_labels.txt", "class_names.txt", "image_ids.txt", "image_sizes.txt", "localization.txt"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert (out / "class_names.txt").read_text().splitlines() == ["n00000001", "n00000002", "n00000003"]
