"""ONNX export of a CAM classifier: one graph with ``logits`` and normalised ``cams``, checked against PyTorch.

* :mod:`wsol.onnx.wrapper`: the exported module (:class:`ExportWrapper`) and its in-graph normalisations;
* :mod:`wsol.onnx.models`: what is exported (a checkpoint of any registered method, or a backbone);
* :mod:`wsol.onnx.export`: :func:`export_onnx` and graph surgery;
* :mod:`wsol.onnx.sidecar`: the JSON sidecar (:func:`~wsol.onnx.sidecar.build_sidecar`);
* :mod:`wsol.onnx.parity`: :func:`check_parity`, onnxruntime against PyTorch.
"""

from wsol.onnx.export import ExportResult, export_onnx, read_metadata_props
from wsol.onnx.models import LoadedCheckpoint, build_backbone_model, imagenet_class_names, load_checkpoint_model
from wsol.onnx.parity import check_parity
from wsol.onnx.wrapper import (
    DEFAULT_EPS,
    SIDECAR_VERSION,
    ExportWrapper,
    describe_normalization,
    normalize_flat_maps,
    parse_cam_classes,
)

__all__ = [
    "LoadedCheckpoint",
    "DEFAULT_EPS",
    "SIDECAR_VERSION",
    "ExportResult",
    "ExportWrapper",
    "build_backbone_model",
    "check_parity",
    "describe_normalization",
    "export_onnx",
    "imagenet_class_names",
    "load_checkpoint_model",
    "normalize_flat_maps",
    "parse_cam_classes",
    "read_metadata_props",
]
