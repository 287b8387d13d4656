"""Command line of the runner: ``wsol bench onnx``, ``python -m ortbench`` or ``benchmarks/onnx_bench.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import append_jsonl, drop_partial_line, load_jsonl, write_reports
from .runner import BenchOptions, ProviderError, Runner


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The runner's flags (shared by every entry point)."""
    d = BenchOptions(model="")
    p.add_argument("--model", required=True, help="the .onnx file (its .json sidecar is read when present)")
    p.add_argument("--providers", default="cpu", help="comma-separated: cpu, cuda, tensorrt (default: cpu)")
    p.add_argument("--batch-sizes", type=_int_list, default=d.batch_sizes, help="comma-separated (default: 1,8,32)")
    p.add_argument("--fp16", action="store_true", help="also measure FP16 (TensorRT flag; FP16 graph elsewhere)")
    p.add_argument("--int8", action="store_true", help="also measure INT8 (QDQ graph, calibrated on --inputs)")
    p.add_argument("--iters", type=int, default=d.iters, help="minimum timed runs (default: %(default)s)")
    p.add_argument("--min-time-s", type=float, default=d.min_time_s, help="minimum timed seconds (default: 10)")
    p.add_argument("--max-time-s", type=float, default=d.max_time_s, help="stop timing after this (default: 60)")
    p.add_argument("--warmup-iters", type=int, default=d.warmup_iters, help="minimum warm-up runs (default: 10)")
    p.add_argument("--warmup-s", type=float, default=d.warmup_s, help="minimum warm-up seconds (default: 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: all cores)")
    p.add_argument("--iobinding", action="store_true", help="bind inputs/outputs on the device (compute latency)")
    p.add_argument("--inputs", default=None, help="npz with 'images' (normalised NCHW) for parity and INT8 calibration")
    p.add_argument("--parity-images", type=int, default=d.parity_images, help="images for parity (default: 8)")
    p.add_argument("--out", default=d.out_dir, help="output folder (default: %(default)s)")
    p.add_argument("--append", action="store_true", help="append to OUT/results.jsonl instead of starting afresh")
    p.add_argument("--trt-cache", default=d.trt_cache_dir, help="TensorRT engine and timing cache root folder")
    p.add_argument("--rebuild-engines", action="store_true", help="delete cached engines to time a cold build")
    p.add_argument("--trt-workspace-gb", type=float, default=d.trt_workspace_gb, help="TensorRT workspace (default: 2)")
    p.add_argument("--allow-cpu-fallback", action="store_true", help="let single GPU-unsupported nodes run on CPU")
    p.add_argument("--jetson", choices=("auto", "on", "off"), default="auto", help="Jetson power/clock recording")
    p.add_argument("--idle-s", type=float, default=0.0, help="Jetson: seconds of idle power to subtract (default: 0)")
    p.add_argument("--tegrastats-interval-ms", type=int, default=d.tegrastats_interval_ms, help="default: 100")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """Map parsed flags onto :class:`BenchOptions`."""
    return BenchOptions(
        model=args.model,
        providers=[p for p in args.providers.split(",") if p.strip()],
        batch_sizes=list(args.batch_sizes),
        fp16=args.fp16,
        int8=args.int8,
        iters=args.iters,
        min_time_s=args.min_time_s,
        max_time_s=args.max_time_s,
        warmup_iters=args.warmup_iters,
        warmup_s=args.warmup_s,
        threads=args.threads,
        iobinding=args.iobinding,
        parity_images=args.parity_images,
        inputs=args.inputs,
        out_dir=args.out,
        trt_cache_dir=args.trt_cache,
        rebuild_engines=args.rebuild_engines,
        trt_workspace_gb=args.trt_workspace_gb,
        allow_cpu_fallback=args.allow_cpu_fallback,
        jetson=args.jetson,
        idle_s=args.idle_s,
        tegrastats_interval_ms=args.tegrastats_interval_ms,
        seed=args.seed,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark; write OUT/results.jsonl (one line per configuration), summary.md, latency.svg.

    Raises:
        ProviderError: (a ValueError) when a provider is unavailable or not applied.
    """
    opts = options_from_args(args)
    runner = Runner(opts)  # validates model and providers before anything is written
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if not args.append:
        results.write_text("")
    elif results.is_file() and drop_partial_line(results):
        print(f"[ortbench] note: dropped a half-written last line of {results} (an interrupted run)")
    try:
        runner.run(on_record=lambda record: append_jsonl(record, results))
    finally:
        # Whatever was measured before a failure still gets its summary.
        records = load_jsonl(results) if results.is_file() else []
        if records:
            summary, plot = write_reports(records, out)
            print(f"[ortbench] wrote {results}, {summary} and {plot}")
    failed = [r for r in records if not r["parity"]["pass"]]
    for r in failed:
        print(f"[ortbench] parity outside the gate: {r['provider']} {r['precision']} batch {r['batch']}: {r['parity']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ortbench`` and ``benchmarks/onnx_bench.py``."""
    parser = argparse.ArgumentParser(
        prog="ortbench", description="Benchmark an ONNX model with onnxruntime (numpy + onnxruntime only)."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (ProviderError, FileNotFoundError, ValueError) as err:
        print(f"ortbench: error: {err}", file=sys.stderr)
        return 2
