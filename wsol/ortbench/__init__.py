"""ONNX Runtime benchmark runner: CPU, x86 GPUs (CUDA, TensorRT) and Jetson AGX Orin, unchanged.

This package imports only the standard library, numpy and onnxruntime (plus ``onnx`` for FP16/INT8
variants), and only through relative imports, so it works three ways:

* ``wsol bench onnx ...`` (installed with wsol);
* ``python benchmarks/onnx_bench.py ...`` (loads this folder by path, without importing wsol or torch);
* copied alone to a device: ``python3 -m ortbench ...`` from the folder that contains ``ortbench/``.
"""

from __future__ import annotations

from .jetson import (
    TegrastatsSampler,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats_line,
    summarize_power,
)
from .metrics import GATES, compare_outputs, latency_stats
from .report import latency_svg, summary_markdown
from .runner import BenchOptions, ProviderError, Runner, resolve_providers

__all__ = [
    "GATES",
    "BenchOptions",
    "ProviderError",
    "Runner",
    "TegrastatsSampler",
    "compare_outputs",
    "latency_stats",
    "latency_svg",
    "parse_jetson_clocks",
    "parse_nvpmodel",
    "parse_tegrastats_line",
    "resolve_providers",
    "summarize_power",
    "summary_markdown",
]
