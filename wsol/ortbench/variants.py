"""FP16 and INT8 (QDQ) variants of an FP32 graph, built with onnxruntime's own tools (needs ``onnx``).

TensorRT runs FP16 from the FP32 graph (``trt_fp16_enable``); the CPU and CUDA providers need an FP16
graph. INT8 uses a QDQ graph for every provider: TensorRT's explicit quantization reads its scales.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ImportError("FP16/INT8 variants need the 'onnx' package: pip install onnx") from err


def make_fp16(src: Path, dst: Path) -> None:
    """Convert weights and activations to FP16, keeping FP32 inputs and outputs."""
    _need_onnx()
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def make_int8(src: Path, dst: Path, images: np.ndarray, input_name: str) -> None:
    """Static QDQ quantisation of Conv/Gemm, calibrated (min-max) on ``images``.

    Activations and weights are symmetric INT8, which TensorRT requires; the CAM tail (selection,
    upsampling, normalisation) stays in floating point so the maps keep their resolution.
    """
    _need_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{input_name: images[i : i + 1]} for i in range(len(images))])

        def get_next(self) -> dict | None:
            return next(self._batches, None)

    root = logging.getLogger()
    level = root.level
    # The quantiser logs advice ("consider pre-processing") through the root logger on every call.
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv", "Gemm"],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    finally:
        root.setLevel(level)
