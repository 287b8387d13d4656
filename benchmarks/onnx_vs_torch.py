"""ONNX Runtime (CPU) vs PyTorch eager latency of the same logits + CAM graph, measured in one run.

Both sides compute ``ExportWrapper`` (backbone, CAM head, top-1 map selection, bilinear upsampling to the
input size, min-max normalisation). Rounds interleave the two engines, alternating which goes first, so
background load on a shared machine hits both alike; the median per engine and batch size is reported
with the ratio ORT / torch (< 1: ORT is faster), and the ratio of the minima. Target: <= 0.75x for
resnet18 + top-1 CAMs.

    python benchmarks/onnx_vs_torch.py --backbone resnet18 --batch-sizes 1,8 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wsol.onnx import ExportWrapper, build_backbone_model, export_onnx


def _time(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--num-classes", type=int, default=200, help="random head size (CUB-200 by default)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cam-classes", default="top1")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for both engines (default: all cores)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    import onnxruntime as ort

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    size = (args.image_size, args.image_size)
    model, _ = build_backbone_model(args.backbone, num_classes=args.num_classes, seed=0)
    wrapper = ExportWrapper(model, args.cam_classes, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        meta = export_onnx(model, path, size, args.cam_classes, opset=args.opset).metadata
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run_torch(x: torch.Tensor) -> None:
        with torch.inference_mode():
            wrapper(x)

    def run_ort(x: np.ndarray) -> None:
        session.run(None, {"images": x})

    inputs = {b: torch.randn(b, 3, *size, generator=torch.Generator().manual_seed(b)) for b in batches}
    feeds = {b: inputs[b].numpy() for b in batches}
    for b in batches:  # both engines must compute the same thing before their times mean anything
        with torch.inference_mode():
            ref = [t.numpy() for t in wrapper(inputs[b])]
        got = session.run(["logits", "cams"], {"images": feeds[b]})
        assert all(np.allclose(g, r, rtol=1e-3, atol=1e-4) for g, r in zip(got, ref, strict=True)), "parity failed"
    times: dict[tuple[str, int], list[float]] = {(e, b): [] for e in ("torch", "ort") for b in batches}
    for round_ in tqdm(range(args.warmup + args.rounds), desc="rounds"):
        for b in batches:
            order = [("torch", run_torch, inputs[b]), ("ort", run_ort, feeds[b])]
            for engine, fn, x in order if round_ % 2 == 0 else order[::-1]:
                elapsed = _time(fn, x)
                if round_ >= args.warmup:
                    times[(engine, b)].append(elapsed)

    rows = []
    setup = f"{args.backbone} + {args.cam_classes} CAMs, {args.num_classes} classes, {size[0]} px"
    print(f"\n{setup}, opset {meta['opset']} ({meta['exporter']}), {threads} threads, median of {args.rounds} rounds")
    print("| batch | torch eager ms | ORT CPU ms | ORT / torch | ORT images/s | ORT / torch of the minima |")
    print("|---|---|---|---|---|---|")
    for b in batches:
        t_ms = statistics.median(times[("torch", b)]) * 1e3
        o_ms = statistics.median(times[("ort", b)]) * 1e3
        # The minima are the least disturbed by other processes on a shared machine.
        min_ratio = min(times[("ort", b)]) / min(times[("torch", b)])
        rows.append(
            {"batch": b, "torch_ms": t_ms, "ort_ms": o_ms, "ratio": o_ms / t_ms, "ratio_of_minima": min_ratio,
             "ort_ips": b / o_ms * 1e3}
        )  # fmt: skip
        print(f"| {b} | {t_ms:.1f} | {o_ms:.1f} | {o_ms / t_ms:.2f}x | {b / o_ms * 1e3:.1f} | {min_ratio:.2f}x |")
    print("target: ORT / torch <= 0.75x (reference measurement: 0.68x)")
    if args.json:
        meta_out = {"backbone": args.backbone, "num_classes": args.num_classes, "image_size": args.image_size,
                    "cam_classes": args.cam_classes, "opset": meta["opset"], "threads": threads,
                    "rounds": args.rounds, "torch": torch.__version__, "onnxruntime": ort.__version__}  # fmt: skip
        Path(args.json).write_text(json.dumps({**meta_out, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
