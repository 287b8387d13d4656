"""Training-step time of SEAM (and MixUp-CAM) relative to plain CAM, measured in one run.

A step is ``module.loss(batch)`` + backward + SGD update. SEAM runs two branches; with its default
rescale-0.3 transform the second branch sees 9 % of the pixels, so its cost is expected well under 2x;
the ``flip`` row shows the full two-branch cost. Methods are interleaved round by round; the median and the
minimum ratios are reported.

    python benchmarks/seam_step.py --batch-size 64 --image-size 64 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from wsol.methods import CAM
from wsol.methods.base import WSOLModule
from wsol.methods.mixup_cam import MixUpCAM
from wsol.methods.seam import SEAM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    common = {"backbone": args.backbone, "num_classes": args.num_classes, "scale_lr": False}
    builders: dict[str, Callable[[], WSOLModule]] = {
        "cam": lambda: CAM(**common),
        "seam (rescale 0.3)": lambda: SEAM(**common),
        "seam (flip)": lambda: SEAM(transform="flip", **common),
        "mixup_cam": lambda: MixUpCAM(**common),
    }
    modules = {name: build().train() for name, build in builders.items()}
    optims = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in modules.items()}
    b, s = args.batch_size, args.image_size
    batch = {
        "image": torch.randn(b, 3, s, s),
        "target": torch.eye(args.num_classes)[torch.randint(args.num_classes, (b,))],
    }
    times: dict[str, list[float]] = {name: [] for name in modules}
    for round_ in range(args.warmup + args.steps):
        for name, module in modules.items():
            t0 = time.perf_counter()
            loss, _ = module.loss(batch)
            optims[name].zero_grad(set_to_none=True)
            loss.backward()
            optims[name].step()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - t0)

    base, base_min = statistics.median(times["cam"]), min(times["cam"])
    print(
        f"backbone={args.backbone} batch={b} size={s} steps={args.steps} "
        f"threads={torch.get_num_threads()} (CPU shared: figures are noisy under load)"
    )
    print(f"{'method':<20} {'step ms':>9} {'vs CAM':>7} {'min vs CAM':>10}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<20} {med * 1e3:9.1f} {med / base:7.2f} {min(values) / base_min:10.2f}")


if __name__ == "__main__":
    main()
