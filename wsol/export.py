"""ONNX export of a CAM classifier: one graph with ``logits`` and normalised ``cams``.

The graph takes ``images`` (float32 NCHW, already normalised with the sidecar's mean/std; the
preprocessing stays in numpy so INT8 calibration and the device see the same inputs) and returns
``logits (N, K)`` and ``cams (N, n, H, W)``: the class maps of the top-1 class (n = 1), of the top-k
classes (n = k, ordered by logit) or of every class (n = K), bilinearly upsampled to the input size and
normalised per map: min-max by default, or max, PaS or IVR (Kim et al., "Normalization Matters in Weakly
Supervised Object Localization", ICCV 2021, arXiv 2107.13221), each with a small epsilon in the divisor so
flat maps stay finite. The batch axis is dynamic; the spatial size is fixed at export time.

PaS and IVR read the map's value at a fixed sorted index; the graph finds it with one ONNX ``TopK`` whose K is a
constant set by the map size (the shorter side of the sort), exact like the library's selection. TensorRT caps
TopK's K (3840 in its current operator documentation, lower in older releases), so at 224 x 224 (K = 5018 for
PaS, 20071 for IVR at 0.6) those two graphs run in onnxruntime but are refused by TensorRT.

Exporters (torch 2.14): the dynamo exporter cannot emit opset 17 (it stops at 18), which is the ceiling
of TensorRT 8.5 / JetPack 5, so ``exporter="auto"`` uses the TorchScript exporter for opset <= 17 and
dynamo above; the legacy exporter mis-exports ReduceMean at opset >= 18 (pytorch/pytorch#104190).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsol.atomic import write_text

SIDECAR_VERSION = 1
DEFAULT_EPS = 1e-5  # >= 1e-5 so the normalisation survives a TensorRT FP16 engine (min normal ~6e-5)


def kth_smallest(flat: torch.Tensor, index: int) -> torch.Tensor:
    """``sorted(flat)[index]`` along the last axis, kept as a trailing axis of size 1, via one ``topk``.

    ``k`` is a Python constant, so the exporters emit a single ONNX ``TopK`` with a constant K. The shorter
    side is sorted: the ``index + 1`` smallest values or the ``size - index`` largest, whose max (or min) is
    the wanted value whatever their order.
    """
    size = int(flat.shape[-1])
    if not 0 <= index < size:
        raise ValueError(f"index must lie in [0, {size}), got {index}")
    if index + 1 <= size - index:
        return flat.topk(index + 1, dim=-1, largest=False).values.amax(dim=-1, keepdim=True)
    return flat.topk(size - index, dim=-1, largest=True).values.amin(dim=-1, keepdim=True)


def normalize_flat_maps(
    flat: torch.Tensor, normalization: str = "minmax", percentile: float = 0.6, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """The export's per-map normalisation of ``(..., HW)`` maps, ONNX-exportable, with ``eps`` in each divisor.

    Kim et al. (ICCV 2021) rules, as in :func:`wsol.metrics.normalize_scoremaps` but with ``+ eps`` instead
    of the zero-map special cases (a constant map gives 0; so does ``max`` on a map with no positive value):

    * ``minmax``: ``(x - min) / (max - min + eps)``;
    * ``max``: ``relu(x) / (max(relu(x)) + eps)``;
    * ``pas``: ``d = x - min``, ``min(1, d / (sorted(d)[int(0.9 n)] + eps))``;
    * ``ivr``: ``r = relu(x - sorted(x)[int(p n)])``, ``r / (max(r) + eps)``.

    Raises:
        ValueError: for an unknown rule or a percentile outside [0, 1).
    """
    from wsol.metrics.normalization import PAS_QUANTILE, check_normalization, quantile_index

    check_normalization(normalization, percentile)
    size = int(flat.shape[-1])
    if normalization == "minmax":
        lo = flat.amin(dim=-1, keepdim=True)
        return (flat - lo) / (flat.amax(dim=-1, keepdim=True) - lo + eps)
    if normalization == "max":
        positive = torch.relu(flat)
        return positive / (positive.amax(dim=-1, keepdim=True) + eps)
    if normalization == "pas":
        shifted = flat - flat.amin(dim=-1, keepdim=True)
        divisor = kth_smallest(shifted, quantile_index(size, PAS_QUANTILE)) + eps
        return torch.clamp(shifted / divisor, max=1.0)
    residual = torch.relu(flat - kth_smallest(flat, quantile_index(size, percentile)))
    return residual / (residual.amax(dim=-1, keepdim=True) + eps)


def describe_normalization(normalization: str, percentile: float, size: int, eps: float = DEFAULT_EPS) -> str:
    """The sidecar's formula of :func:`normalize_flat_maps` for maps of ``size`` pixels."""
    from wsol.metrics.normalization import PAS_QUANTILE, quantile_index

    if normalization == "minmax":
        return f"per map (x - min) / (max - min + {eps:g})"
    if normalization == "max":
        return f"per map relu(x) / (max(relu(x)) + {eps:g})"
    if normalization == "pas":
        k = quantile_index(size, PAS_QUANTILE)
        return f"per map d = x - min; min(1, d / (sorted(d)[{k}] + {eps:g})) (PaS, sorted index int(0.9 * {size}))"
    k = quantile_index(size, percentile)
    return (
        f"per map r = relu(x - sorted(x)[{k}]); r / (max(r) + {eps:g}) "
        f"(IVR, percentile {percentile:g}, sorted index int({percentile:g} * {size}))"
    )


def parse_cam_classes(spec: str) -> tuple[str, int | None]:
    """Parse ``top1``, ``all`` or ``topk:K`` into ``(mode, k)`` (``k`` is None for ``all``).

    Raises:
        ValueError: for anything else, or K < 1.
    """
    spec = spec.strip().lower()
    if spec == "top1":
        return "top1", 1
    if spec == "all":
        return "all", None
    if spec.startswith("topk:"):
        try:
            k = int(spec[len("topk:") :])
        except ValueError:
            k = 0
        if k >= 1:
            return ("top1", 1) if k == 1 else ("topk", k)
    raise ValueError(f"cam classes must be 'top1', 'all' or 'topk:K' with K >= 1, got {spec!r}")


class ExportWrapper(nn.Module):
    """``images -> (logits, cams)`` around any module with ``forward_with_cams``; used only for export.

    The map and image sizes are probed once at construction and used as Python constants, so both
    exporters emit constant Reshape/Resize shapes and a fully static ``cams`` shape apart from the batch.

    Args:
        model: a module whose ``forward_with_cams(images)`` returns ``(logits (N, K), maps (N, K, h, w))``
            (every :class:`~wsol.methods.WSOLModule`); it is put in eval mode.
        cam_classes: ``top1``, ``topk:K`` or ``all``.
        image_size: ``(H, W)`` of the exported input.
        eps: added to the divisor of the per-map normalisation so flat maps stay finite.
        normalization: ``minmax`` (default), ``max``, ``pas`` or ``ivr`` (see :func:`normalize_flat_maps`).
        percentile: IVR's percentile in [0, 1).

    Raises:
        ValueError: if the model lacks ``forward_with_cams`` or its maps and logits disagree on K, or for a
            bad normalisation or percentile.
    """

    def __init__(
        self,
        model: nn.Module,
        cam_classes: str = "top1",
        image_size: tuple[int, int] = (224, 224),
        eps: float = DEFAULT_EPS,
        normalization: str = "minmax",
        percentile: float = 0.6,
    ) -> None:
        from wsol.metrics.normalization import check_normalization

        super().__init__()
        if not hasattr(model, "forward_with_cams"):
            raise ValueError("the model must define forward_with_cams(images) -> (logits, maps)")
        check_normalization(normalization, percentile)
        self.normalization, self.percentile = normalization, float(percentile)
        self.model = model.eval()
        self.mode, k = parse_cam_classes(cam_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.eps = float(eps)
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            logits, maps = model.forward_with_cams(torch.zeros(1, 3, *self.image_size, device=self.device))
        if maps.ndim != 4 or maps.shape[1] != logits.shape[1]:
            raise ValueError(
                f"forward_with_cams returned logits {tuple(logits.shape)} and maps {tuple(maps.shape)}; "
                "the export needs one map per logit"
            )
        self.num_classes, self.map_size = int(maps.shape[1]), (int(maps.shape[2]), int(maps.shape[3]))
        self.num_cams = self.num_classes if k is None else min(k, self.num_classes)
        self.eval()

    def train(self, mode: bool = True) -> ExportWrapper:
        """Stay in eval mode: the legacy exporter restores the wrapper's mode after tracing, which would
        otherwise flip BatchNorm and dropout of the wrapped model back to training."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, maps = self.model.forward_with_cams(images)
        (h, w), n = self.map_size, self.num_cams
        if self.mode == "all":
            selected = maps
        else:
            idx = logits.argmax(dim=1, keepdim=True) if n == 1 else logits.topk(n, dim=1).indices
            # A one-hot MatMul selects the maps without Gather/Expand over dynamic shapes, which
            # TensorRT handles less gracefully than a batched MatMul.
            classes = torch.arange(self.num_classes, device=maps.device)
            onehot = (idx.unsqueeze(2) == classes).to(maps.dtype)
            flat_maps = maps.reshape(-1, self.num_classes, h * w)
            selected = torch.matmul(onehot, flat_maps).reshape(-1, n, h, w)
        up = F.interpolate(selected, size=self.image_size, mode="bilinear", align_corners=False)
        flat = up.reshape(-1, n, self.image_size[0] * self.image_size[1])
        cams = normalize_flat_maps(flat, self.normalization, self.percentile, self.eps)
        return logits, cams.reshape(-1, n, *self.image_size)


# ------------------------------------------------------------------------------------------ models
def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, list[str] | None]:
    """Load a checkpoint of any registered training method on CPU (:func:`wsol.load_model`).

    Pretrained backbone weights are never fetched: the checkpoint holds every weight.

    Returns:
        The model in eval mode and the class names stored in the checkpoint, if any.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint cannot be read safely, names no registered method, or was trained with a
            backbone module rather than a name.
    """
    from wsol.methods.checkpoint import load_model, read_checkpoint

    path = Path(path)
    ckpt = read_checkpoint(path)  # weights_only: a crafted file is refused, never executed
    hparams = ckpt.get("hyper_parameters", {})
    if "backbone" not in hparams:
        raise ValueError(
            f"{path.name} was trained with a backbone module, not a registered name; rebuild the model in "
            "Python and call wsol.export.export_onnx on it"
        )
    model = load_model(path)
    names = hparams.get("class_names") or ckpt.get("datamodule_hyper_parameters", {}).get("class_names")
    return model.eval(), (list(map(str, names)) if names else None)


def build_backbone_model(
    backbone: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, str]:
    """A CAM classifier from a backbone name, for export and benchmarking without a trained checkpoint.

    With pretrained weights that include a classifier (e.g. ImageNet's ``fc``) the CAM head is that
    classifier; otherwise the head is randomly initialised (seeded) with ``num_classes`` outputs.

    Returns:
        The model in eval mode and the head's origin: ``"pretrained"`` or ``"random"``.

    Raises:
        ValueError: if ``num_classes`` contradicts the pretrained classifier.
    """
    from wsol.backbones import create_backbone
    from wsol.methods import CAM

    torch.manual_seed(seed)
    body = create_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
    fc = body.classifier
    if fc is not None and num_classes not in (None, fc.out_features):
        raise ValueError(f"the pretrained classifier of {backbone} has {fc.out_features} classes, not {num_classes}")
    model = CAM(backbone=body, num_classes=fc.out_features if fc is not None else (num_classes or 1000))
    if fc is None:
        return model.eval(), "random"
    with torch.no_grad():
        # By linearity, fc(GAP(f)) == GAP(conv1x1(f)) with the fc weights as 1x1 kernels.
        model.head.weight.copy_(fc.weight.reshape(model.head.weight.shape))
        model.head.bias.copy_(fc.bias if fc.bias is not None else torch.zeros_like(model.head.bias))
    return model.eval(), "pretrained"


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in the standard index order (from torchvision, offline)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# ------------------------------------------------------------------------------------------ export
@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    sidecar_path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def parity(self) -> dict[str, Any] | None:
        return self.metadata.get("parity")


def export_onnx(
    model: nn.Module,
    out: str | Path,
    image_size: tuple[int, int] = (224, 224),
    cam_classes: str = "top1",
    opset: int = 17,
    exporter: str = "auto",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    class_names: list[str] | None = None,
    parity: bool = True,
    parity_batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    rtol: float = 1e-4,
    extra_metadata: dict[str, Any] | None = None,
    normalization: str = "minmax",
    percentile: float = 0.6,
) -> ExportResult:
    """Export ``model`` to one ONNX graph with ``logits`` and ``cams``, check it and write its sidecar.

    Writes exactly two files: ``out`` (self-contained, no external data) and ``out`` with a ``.json``
    suffix (preprocessing, class names, opset, outputs, parity). The graph is validated with
    ``onnx.checker`` (full check). The parity check runs the graph in onnxruntime (CPU) on seeded random
    inputs at ``parity_batches`` (the export traces batch 2, so 1 and 3 exercise the dynamic axis) and
    compares with PyTorch: ``|delta| <= atol + rtol * |reference|`` for logits and CAMs, and equal top-1.

    Args:
        model: a module with ``forward_with_cams`` (any :class:`~wsol.methods.WSOLModule`).
        out: the ``.onnx`` path.
        image_size: ``(H, W)`` of the input; the batch axis stays dynamic.
        cam_classes: ``top1``, ``topk:K`` or ``all``.
        opset: ONNX opset (17 for TensorRT 8.5 / JetPack 5; 18-20 for TensorRT 10).
        exporter: ``auto`` (TorchScript for opset <= 17, dynamo above), ``torchscript`` or ``dynamo``.
        mean: normalisation mean of the inputs (default: the backbone's).
        std: normalisation std of the inputs (default: the backbone's).
        class_names: names of the K classes (default: their indices).
        parity: run the onnxruntime parity check.
        parity_batches: batch sizes of the parity check.
        atol: absolute tolerance of the parity check.
        rtol: relative tolerance of the parity check.
        extra_metadata: merged into the sidecar (e.g. the model's source).
        normalization: per-map normalisation of ``cams``: ``minmax`` (default), ``max``, ``pas`` or ``ivr``
            (see :func:`normalize_flat_maps`).
        percentile: IVR's percentile in [0, 1).

    Returns:
        The written paths and the sidecar contents; ``result.parity["pass"]`` tells whether it matched.

    Raises:
        ValueError: for a bad path, opset/exporter combination, CAM-class spec, normalisation or percentile.
    """
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"the output path must end in .onnx, got {out}")
    if exporter == "auto":
        exporter = "torchscript" if opset <= 17 else "dynamo"
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be auto, torchscript or dynamo, got {exporter!r}")
    if exporter == "dynamo" and opset < 18:
        raise ValueError(f"the dynamo exporter cannot emit opset {opset} (its minimum is 18); use torchscript")
    if exporter == "torchscript" and not 11 <= opset <= 17:
        raise ValueError(
            f"the TorchScript exporter is used for opsets 11-17 only (at >= 18 it emits an invalid ReduceMean, "
            f"pytorch/pytorch#104190); got {opset}, use dynamo"
        )
    wrapper = ExportWrapper(model, cam_classes, image_size, normalization=normalization, percentile=percentile)
    backbone = getattr(model, "backbone", None)
    mean = tuple(mean or getattr(backbone, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(std or getattr(backbone, "std", None) or (0.229, 0.224, 0.225))
    k, n = wrapper.num_classes, wrapper.num_cams
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a model with {k} classes")

    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _run_exporter(wrapper, out, exporter, opset)
    proto = onnx.load(str(out))
    _inline_constant_identities(proto)
    _set_output_shapes(proto, {"logits": ["batch", k], "cams": ["batch", n, *wrapper.image_size]})
    onnx.save(proto, str(out))
    export_seconds = time.perf_counter() - start
    onnx.checker.check_model(str(out), full_check=True)

    metadata: dict[str, Any] = {
        "format": "wsol-onnx",
        "version": SIDECAR_VERSION,
        "model_file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "file_bytes": out.stat().st_size,
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "exporter": exporter,
        "export_seconds": round(export_seconds, 2),
        "inputs": {"images": {"shape": ["batch", 3, *wrapper.image_size], "dtype": "float32", "layout": "NCHW"}},
        "outputs": {
            "logits": {"shape": ["batch", k], "dtype": "float32"},
            "cams": {"shape": ["batch", n, *wrapper.image_size], "dtype": "float32", "range": [0.0, 1.0]},
        },
        "preprocessing": {
            "size": list(wrapper.image_size),
            "mean": list(mean),
            "std": list(std),
            "input_scale": 1 / 255,
            "channel_order": "RGB",
            "formula": "images = (rgb_uint8 / 255 - mean) / std, resized to size, NCHW float32",
        },
        "cams": {
            "classes": wrapper.mode if wrapper.mode != "topk" else f"topk:{n}",
            "order": "by descending logit" if wrapper.mode != "all" else "class index",
            "upsampling": "bilinear, half_pixel (align_corners=False)",
            "normalization": describe_normalization(
                normalization, wrapper.percentile, wrapper.image_size[0] * wrapper.image_size[1], wrapper.eps
            ),
            "normalization_method": normalization,
            "percentile": wrapper.percentile if normalization == "ivr" else None,
        },
        "num_classes": k,
        "class_names": list(class_names) if class_names is not None else [str(i) for i in range(k)],
        "op_histogram": dict(sorted(Counter(node.op_type for node in proto.graph.node).items())),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    metadata.update(extra_metadata or {})
    if parity:
        metadata["parity"] = check_parity(wrapper, out, parity_batches, atol=atol, rtol=rtol)
    sidecar = out.with_suffix(".json")
    write_text(sidecar, json.dumps(metadata, indent=2) + "\n")
    return ExportResult(out, sidecar, metadata)


def _run_exporter(wrapper: ExportWrapper, out: Path, exporter: str, opset: int) -> None:
    # Batch 2 at trace time: torch.export specialises a dimension traced at size 1.
    example = torch.zeros(2, 3, *wrapper.image_size, device=wrapper.device)
    names = {"input_names": ["images"], "output_names": ["logits", "cams"]}
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice and trace-time shape warnings are expected here: shapes
        # other than the batch are deliberately constant.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        if exporter == "torchscript":
            torch.onnx.export(
                wrapper,
                (example,),
                str(out),
                opset_version=opset,
                dynamo=False,
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "cams": {0: "batch"}},
                **names,
            )
        else:
            program = torch.onnx.export(
                wrapper,
                (example,),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
                verbose=False,
                **names,
            )
            program.save(str(out), external_data=False)


def _inline_constant_identities(proto: Any) -> None:
    """Turn ``Identity(initializer)`` nodes into initializers.

    The TorchScript exporter shares equal tensors (e.g. identical folded Conv biases) through Identity
    nodes; as plain initializers they stay constants for the INT8 quantiser and TensorRT's parser.
    """
    import onnx

    initializers = {t.name: t for t in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    kept = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(initializers[node.input[0]])
            tensor.name = node.output[0]
            proto.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)


def _set_output_shapes(proto: Any, shapes: dict[str, list[int | str]]) -> None:
    """Write the known output shapes (the TorchScript exporter leaves placeholder names for Reshape outputs)."""
    for output in proto.graph.output:
        if output.name not in shapes:
            continue
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for value in shapes[output.name]:
            dim = dims.add()
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = int(value)


def check_parity(
    wrapper: ExportWrapper,
    onnx_path: str | Path,
    batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the ONNX graph in onnxruntime (CPU) with the PyTorch wrapper on seeded random inputs.

    Returns:
        ``logits_max_abs``, ``cams_max_abs``, ``cams_mean_abs``, ``top1_agree`` (fraction), the
        tolerances, the batch sizes and ``pass``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = {"logits": 0.0, "cams": 0.0}
    cam_sum, cam_count, agree, total, within = 0.0, 0, 0, 0, True
    for batch in batches:
        images = rng.standard_normal((batch, 3, *wrapper.image_size), dtype=np.float32)
        with torch.no_grad():
            ref = [t.cpu().numpy() for t in wrapper(torch.from_numpy(images).to(wrapper.device))]
        got = session.run(["logits", "cams"], {"images": images})
        for name, r, g in zip(("logits", "cams"), ref, got, strict=True):
            if r.shape != g.shape:
                raise ValueError(f"{name}: onnxruntime shape {g.shape} != PyTorch shape {r.shape} at batch {batch}")
            diff = np.abs(g - r)
            worst[name] = max(worst[name], float(diff.max()))
            within &= bool(np.all(diff <= atol + rtol * np.abs(r)))
        cam_diff = np.abs(got[1] - ref[1])
        cam_sum, cam_count = cam_sum + float(cam_diff.sum()), cam_count + cam_diff.size
        agree += int((got[0].argmax(1) == ref[0].argmax(1)).sum())
        total += batch
    result = {
        "batches": list(batches),
        "logits_max_abs": worst["logits"],
        "cams_max_abs": worst["cams"],
        "cams_mean_abs": cam_sum / max(cam_count, 1),
        "top1_agree": agree / max(total, 1),
        "atol": atol,
        "rtol": rtol,
    }
    result["pass"] = within and agree == total
    return result
