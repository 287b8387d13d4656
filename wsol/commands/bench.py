"""``wsol bench onnx``: the ONNX Runtime benchmark suite (see benchmarks/README.md)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="inference benchmarks (bench onnx: onnxruntime on CPU, CUDA, TensorRT, Jetson)",
        description="Inference benchmarks. 'wsol bench onnx --help' lists the ONNX Runtime runner's options.",
    )
    sub = p.add_subparsers(dest="bench_command", metavar="SUITE", required=True)
    onnx = sub.add_parser(
        "onnx",
        help="time an exported model with onnxruntime per provider, precision and batch size",
        description=(
            "Time an ONNX model with onnxruntime: one JSON line per provider x precision x batch size in "
            "OUT/results.jsonl, plus OUT/summary.md and OUT/latency.svg. Requested providers that are missing "
            "or not applied are errors. The same runner works without wsol or torch: "
            "'python benchmarks/onnx_bench.py' or 'python -m ortbench'."
        ),
    )
    from wsol.ortbench.cli import add_arguments  # numpy/onnxruntime are imported only when running

    add_arguments(onnx)
    onnx.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsol.ortbench.cli import run_from_args

    return run_from_args(args)
