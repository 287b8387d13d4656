"""The JSON sidecar of an exported graph: what a runtime needs to feed it and read its outputs.

:func:`build_sidecar` gathers it from the export wrapper and the written graph; ``wsol.onnx.export`` adds the
file's facts (hash, size, export time) and the parity check, and copies part of it into the graph itself.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from wsol.onnx.wrapper import SIDECAR_VERSION, ExportWrapper, describe_normalization

__all__ = ["build_sidecar", "cams_entry"]


def cams_entry(wrapper: ExportWrapper) -> dict[str, Any]:
    """The sidecar's ``cams`` entry: which classes' maps, in what order, and how they were upsampled and normalised."""
    from wsol.metrics.normalization import get_normalization

    n = wrapper.num_cams
    record = get_normalization(wrapper.normalization, wrapper.percentile).record(wrapper.percentile)
    return {
        "classes": wrapper.mode if wrapper.mode != "topk" else f"topk:{n}",
        "order": "by descending logit" if wrapper.mode != "all" else "class index",
        "upsampling": "bilinear, half_pixel (align_corners=False)",
        "normalization": describe_normalization(
            wrapper.normalization, wrapper.percentile, wrapper.image_size[0] * wrapper.image_size[1], wrapper.eps
        ),
        "normalization_method": record["method"],
        "percentile": record["percentile"],
    }


def build_sidecar(
    wrapper: ExportWrapper,
    proto: Any,
    model_file: str,
    exporter: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    class_names: list[str] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar of the graph ``proto`` exported from ``wrapper`` (before the file's facts and the parity check).

    Args:
        wrapper: The exported module.
        proto: The graph (``onnx.ModelProto``), for its opset and operator histogram.
        model_file: The graph's file name, recorded so the sidecar names its graph.
        exporter: ``torchscript`` or ``dynamo``.
        mean: Normalisation mean of the inputs.
        std: Normalisation std of the inputs.
        class_names: Names of the K classes (default: their indices).
        extra_metadata: Merged in last (e.g. the model's source).
    """
    import onnx

    k, n = wrapper.num_classes, wrapper.num_cams
    spatial = ["height", "width"] if wrapper.dynamic_size else list(wrapper.image_size)
    metadata: dict[str, Any] = {
        "format": "wsol-onnx",
        "version": SIDECAR_VERSION,
        "model_file": model_file,
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "exporter": exporter,
        "inputs": {"images": {"shape": ["batch", 3, *spatial], "dtype": "float32", "layout": "NCHW"}},
        "outputs": {
            "logits": {"shape": ["batch", k], "dtype": "float32"},
            "cams": {"shape": ["batch", n, *spatial], "dtype": "float32", "range": [0.0, 1.0]},
        },
        "preprocessing": {
            "size": list(wrapper.image_size),
            "mean": list(mean),
            "std": list(std),
            "input_scale": 1 / 255,
            "channel_order": "RGB",
            "resize": "squash the whole image to size (no crop), bilinear",
            "formula": "images = (rgb_uint8 / 255 - mean) / std, resized to size, NCHW float32",
        },
        "cams": cams_entry(wrapper),
        "num_classes": k,
        "class_names": list(class_names) if class_names is not None else [str(i) for i in range(k)],
        "op_histogram": dict(sorted(Counter(node.op_type for node in proto.graph.node).items())),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    metadata.update(extra_metadata or {})
    return metadata
