"""ONNX export of a CAM classifier: one graph with ``logits`` and normalised ``cams``.

The graph takes ``images`` (float32 NCHW, already normalised with the sidecar's mean/std; the
preprocessing stays in numpy so INT8 calibration and the device see the same inputs) and returns
``logits (N, K)`` and ``cams (N, n, H, W)``: the class maps of the top-1 class (n = 1), of the top-k
classes (n = k, ordered by logit) or of every class (n = K), bilinearly upsampled to the input size and
normalised per map: min-max by default, or another rule of :data:`wsol.metrics.NORMALIZATIONS` (max, PaS,
IVR: Kim et al., "Normalization Matters in Weakly Supervised Object Localization", ICCV 2021, arXiv
2107.13221), each with a small epsilon in the divisor so flat maps stay finite. The batch axis is dynamic;
the spatial size is fixed at export time.

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
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wsol.atomic import write_text
from wsol.onnx.parity import check_parity
from wsol.onnx.sidecar import build_sidecar
from wsol.onnx.wrapper import ExportWrapper


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
    dynamic_size: bool = False,
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
        normalization: per-map normalisation of ``cams``, a rule of :data:`wsol.metrics.NORMALIZATIONS`
            (``minmax`` by default; see :func:`~wsol.onnx.wrapper.normalize_flat_maps`).
        percentile: IVR's percentile in [0, 1).
        dynamic_size: export dynamic height and width too (TorchScript exporter; a rule without a sorted index,
            such as ``minmax`` or ``max``); the
            parity check then also runs at a second size, ``image_size`` plus 32 pixels each way.

    Returns:
        The written paths and the sidecar contents; ``result.parity["pass"]`` tells whether it matched.

    Raises:
        ValueError: for a bad path, opset/exporter combination, CAM-class spec, normalisation or percentile.
    """
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"the output path must end in .onnx, got {out}")
    exporter = _choose_exporter(exporter, opset, dynamic_size)
    wrapper = ExportWrapper(
        model, cam_classes, image_size, normalization=normalization, percentile=percentile, dynamic_size=dynamic_size
    )
    from wsol.models.contract import IMAGENET_MEAN, IMAGENET_STD, backbone_contract

    backbone = getattr(model, "backbone", None)
    contract = backbone_contract(backbone) if isinstance(backbone, nn.Module) else None
    mean = tuple(mean or (contract.mean if contract else IMAGENET_MEAN))
    std = tuple(std or (contract.std if contract else IMAGENET_STD))
    k, n = wrapper.num_classes, wrapper.num_cams
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a model with {k} classes")

    out.parent.mkdir(parents=True, exist_ok=True)
    # The graph is written, checked and compared under a temporary name, then renamed over OUT; the sidecar comes
    # last. A run killed on the way leaves the previous graph with its own sidecar (or a graph without one).
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.onnx")
    try:
        start = time.perf_counter()
        _run_exporter(wrapper, tmp, exporter, opset)
        proto = onnx.load(str(tmp))
        _inline_constant_identities(proto)
        spatial = ["height", "width"] if dynamic_size else list(wrapper.image_size)
        _set_output_shapes(proto, {"logits": ["batch", k], "cams": ["batch", n, *spatial]})

        metadata = build_sidecar(wrapper, proto, out.name, exporter, mean, std, class_names, extra_metadata)
        # The graph describes itself: what a runtime needs to feed it and read its outputs travels inside the file.
        _set_metadata_props(proto, {key: metadata[key] for key in METADATA_PROPS})
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        metadata["export_seconds"] = round(time.perf_counter() - start, 2)
        metadata["sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        metadata["file_bytes"] = tmp.stat().st_size
        if parity:
            metadata["parity"] = _check_graph(wrapper, tmp, parity_batches, atol, rtol)
        sidecar = out.with_suffix(".json")
        sidecar.unlink(missing_ok=True)  # the previous graph's: never left beside the new one
        os.replace(tmp, out)
        write_text(sidecar, json.dumps(metadata, indent=2) + "\n")
        return ExportResult(out, sidecar, metadata)
    finally:
        tmp.unlink(missing_ok=True)


def _choose_exporter(exporter: str, opset: int, dynamic_size: bool) -> str:
    """``torchscript`` or ``dynamo`` for ``exporter`` (``auto``: by opset), or ``ValueError`` for a bad combination."""
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
    if dynamic_size and exporter != "torchscript":
        raise ValueError(f"a dynamic input size is exported by the TorchScript exporter (opset <= 17), got {exporter}")
    return exporter


def _check_graph(
    wrapper: ExportWrapper, path: Path, batches: tuple[int, ...], atol: float, rtol: float
) -> dict[str, Any]:
    """The parity check of the graph at ``path``; a dynamic-size graph is checked at a second size too and the
    two results are combined (the worst difference, every check passed)."""
    first = check_parity(wrapper, path, batches, atol=atol, rtol=rtol)
    if not wrapper.dynamic_size:
        return first
    other = (wrapper.image_size[0] + 32, wrapper.image_size[1] + 32)
    second = check_parity(wrapper, path, batches, atol=atol, rtol=rtol, size=other)
    return {
        **first,
        "sizes": [list(wrapper.image_size), list(other)],
        "logits_max_abs": max(first["logits_max_abs"], second["logits_max_abs"]),
        "cams_max_abs": max(first["cams_max_abs"], second["cams_max_abs"]),
        "top1_agree": min(first["top1_agree"], second["top1_agree"]),
        "pass": first["pass"] and second["pass"],
    }


# Sidecar entries copied into the graph's metadata_props, each as JSON under "wsol.<key>".
METADATA_PROPS = ("format", "version", "preprocessing", "inputs", "outputs", "cams", "num_classes", "class_names")


def _set_metadata_props(proto: Any, entries: dict[str, Any]) -> None:
    """Write ``entries`` into the model's ``metadata_props`` as ``wsol.<key>`` -> JSON (replacing earlier ones)."""
    keep = [p for p in proto.metadata_props if not p.key.startswith("wsol.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"wsol.{key}", json.dumps(value)


def read_metadata_props(path: str | Path) -> dict[str, Any]:
    """The ``wsol.*`` entries of an exported graph's ``metadata_props``, decoded (keys without the prefix).

    Works with onnxruntime alone (``InferenceSession(...).get_modelmeta().custom_metadata_map``), so a deployment
    needs no sidecar file.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        if key.startswith("wsol."):
            try:
                props[key[len("wsol.") :]] = json.loads(value)
            except ValueError as err:
                raise ValueError(f"{path}: metadata_props entry {key!r} is not valid JSON: {err}") from None
    if props:
        _check_props(path, props, session)
    return props


def _check_props(path: str | Path, props: dict[str, Any], session: Any) -> None:
    """The graph's own inputs and outputs must agree with what its ``wsol.*`` entries say about them.

    Raises:
        ValueError: naming the file and the entry that disagrees with the graph (or is malformed).
    """

    def fail(key: str, why: str) -> ValueError:
        return ValueError(f"{path}: metadata_props entry 'wsol.{key}' {why}")

    preprocessing = props.get("preprocessing")
    size = preprocessing.get("size") if isinstance(preprocessing, dict) else None
    if "preprocessing" in props and (
        not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise fail("preprocessing", f"must hold 'size': [height, width] in pixels, got {size!r}")
    dims = list(session.get_inputs()[0].shape)
    fixed = [d for d in dims[2:] if isinstance(d, int)]
    if size is not None and len(dims) == 4 and len(fixed) == 2 and fixed != size:
        raise fail("preprocessing", f"says size {size}, but the graph's input is {dims}")
    outputs = {o.name: list(o.shape) for o in session.get_outputs()}
    k = props.get("num_classes")
    if "num_classes" in props and (not isinstance(k, int) or k < 1):
        raise fail("num_classes", f"must be a positive integer, got {k!r}")
    logits = outputs.get("logits")
    if isinstance(k, int) and logits is not None and len(logits) == 2 and isinstance(logits[1], int) and logits[1] != k:
        raise fail("num_classes", f"says {k} classes, but the graph's logits are {logits}")
    names = props.get("class_names")
    if "class_names" in props and (not isinstance(names, list) or (isinstance(k, int) and len(names) != k)):
        raise fail("class_names", f"must list num_classes ({k}) names, got {names!r:.80}")


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
                dynamic_axes={
                    "images": {0: "batch", **({2: "height", 3: "width"} if wrapper.dynamic_size else {})},
                    "logits": {0: "batch"},
                    "cams": {0: "batch", **({2: "height", 3: "width"} if wrapper.dynamic_size else {})},
                },
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
