"""Cost of each CAM method relative to a plain forward pass, measured in one run (CPU by default).

Baseline: ``model(images)`` under ``torch.inference_mode()``. Each method's time is end-to-end: the
hooked forward, the maps of the GT class, and upsampling + min-max to the input size
(``minmax_cams``), as torch-cam's and pytorch-grad-cam's own figures are measured. Extra rows: CAM for
every class (``(B, K, h, w)`` at feature resolution: all 1000 maps at 224 px would be 6.4 GB) and
Grad-CAM in differentiable mode (full autograd graph). Variants are interleaved round by round so
background load hits them alike. Printed: the median wall-time ratio, the min/min wall ratio (the
least disturbed runs), the median user-CPU ratio (this process's compute, which other processes on a
shared machine disturb far less than wall time) and the median system seconds. With glibc's default
settings the system time is mostly page faults of freshly mapped tensor memory, 0 to 0.4 s per call
for resnet18 at batch 32 depending on the allocator's state after the *previous* call, whatever the
method: identical forward passes then differ by 20-30% in wall time. By default the benchmark asks
glibc to keep freed memory (``mallopt``: no ``mmap``, no trimming), which removes that noise for every
variant alike; ``--default-allocator`` measures without it.
Score-CAM needs one masked forward per channel, so it is timed on ``--scorecam-images`` images against
a forward of the same batch.

For scale, measured earlier on this kind of machine (resnet18, batch 32, 224 px): torch-cam's CAM
1.00-1.02x, pytorch-grad-cam's GradCAM 2.9-3.4x.

    python benchmarks/cam_overhead.py --model resnet18 --batch-size 32 --rounds 5
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from wsol.cams import create_cam, minmax_cams


def build_model(name: str) -> nn.Module:
    """``resnet18`` (torchvision, random weights, as in the peers' measurement) or a wsol backbone name."""
    if name == "resnet18":
        import torchvision

        return torchvision.models.resnet18().eval()
    from wsol.cams import load_cam_model

    return load_cam_model(backbone=name, pretrained=name == "efficientnet_lite0", num_classes=1000).module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="resnet18 (torchvision) or a wsol backbone name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one call per variant each)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scorecam-images", type=int, default=1, help="images for the Score-CAM row (0: skip)")
    parser.add_argument("--default-allocator", action="store_true", help="leave glibc's malloc settings alone")
    args = parser.parse_args()
    if not args.default_allocator:
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model)
    b, s = args.batch_size, args.image_size
    images = torch.randn(b, 3, s, s)
    with torch.no_grad():
        labels = torch.randint(model(images[:1]).shape[1], (b,))

    def forward(x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return run

    def method(name: str, targets: object = None, differentiable: bool = False, upsample: bool = True, x=images):
        extractor = create_cam(name, model)
        targets = labels[: len(x)] if targets is None else targets

        def run() -> object:
            maps = extractor(x, targets, differentiable=differentiable).maps
            return minmax_cams(maps, size=(s, s)) if upsample else maps

        return run

    variants: dict[str, Callable[[], object]] = {"forward (inference_mode)": forward(images)}
    for name in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "eigencam"):
        variants[name] = method(name)
    variants["cam, all classes (B,K,h,w)"] = method("cam", targets="all", upsample=False)
    variants["gradcam, differentiable"] = method("gradcam", differentiable=True)
    wall, user, system = time_interleaved(variants, args.warmup, args.rounds)

    ref = "forward (inference_mode)"
    base, base_min, base_user = statistics.median(wall[ref]), min(wall[ref]), statistics.median(user[ref])
    print(
        f"model={args.model} batch={b} size={s} rounds={args.rounds} threads={torch.get_num_threads()} "
        "(CPU shared: compare ratios within this run, not across runs)"
    )
    print(f"{'variant':<30} {'median s':>9} {'ratio':>7} {'min ratio':>9} {'user ratio':>10} {'sys s':>6}  wall runs")
    for name, runs in wall.items():
        med = statistics.median(runs)
        runs_text = " / ".join(f"{t:.3f}" for t in runs)
        user_ratio = statistics.median(user[name]) / base_user
        print(
            f"{name:<30} {med:9.3f} {med / base:7.2f} {min(runs) / base_min:9.2f} {user_ratio:10.2f} "
            f"{statistics.median(system[name]):6.2f}  {runs_text}"
        )

    if args.scorecam_images:
        x = images[: args.scorecam_images]
        few_wall, few_user, _ = time_interleaved({"forward": forward(x), "scorecam": method("scorecam", x=x)}, 1, 1)
        print(
            f"scorecam on {len(x)} image(s): {few_wall['scorecam'][0]:.2f} s, "
            f"{few_user['scorecam'][0] / few_user['forward'][0]:.0f}x the user CPU time of a forward of the same batch"
        )


def keep_freed_memory() -> None:
    """Ask glibc to serve every allocation from the heap and never return it (no page-fault noise)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    m_trim_threshold, m_mmap_max = -1, -4
    if libc is None or not hasattr(libc, "mallopt"):
        print("note: no glibc mallopt here; timings include the allocator's page faults")
        return
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**30)


def time_interleaved(
    variants: dict[str, Callable[[], object]], warmup: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Wall, user-CPU and system-CPU seconds per call, round-robin so that drifting load is shared."""
    wall: dict[str, list[float]] = {name: [] for name in variants}
    user: dict[str, list[float]] = {name: [] for name in variants}
    system: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup + rounds):
        for name, fn in variants.items():
            r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            fn()
            w1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            if round_ >= warmup:
                wall[name].append(w1 - w0)
                user[name].append(r1.ru_utime - r0.ru_utime)
                system[name].append(r1.ru_stime - r0.ru_stime)
    return wall, user, system


if __name__ == "__main__":
    main()
