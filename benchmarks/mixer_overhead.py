"""Per-step training time with each batch mixer, relative to no mixing, measured in one run.

A step is ``WSOLModule.loss`` (mixing + forward) + backward + SGD update. Mixers and the baseline
are interleaved round by round so that background load affects them alike; median and minimum
ratios are reported, plus the cost of the mixer call alone ("intrinsic"). Target: <= 1.05 at batch 64,
64 px on CPU.

    python benchmarks/mixer_overhead.py --batch-size 64 --image-size 64 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wsol.augment import create_mixer, list_mixers
from wsol.methods.base import WSOLModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step per mixer each)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    module = WSOLModule(args.backbone, num_classes=args.num_classes, scale_lr=False)
    module.train()
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    b, s = args.batch_size, args.image_size
    batch = {
        "image": torch.randn(b, 3, s, s),
        "target": torch.eye(args.num_classes)[torch.randint(args.num_classes, (b,))],
    }
    mixers = {"none": None} | {name: create_mixer(name, seed=0) for name in list_mixers()}
    step_times: dict[str, list[float]] = {name: [] for name in mixers}
    mix_times: dict[str, list[float]] = {name: [] for name in mixers}

    for round_ in range(args.warmup + args.steps):
        for name, mixer in mixers.items():
            module.mixer = mixer
            t0 = time.perf_counter()
            loss, _ = module.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t1 = time.perf_counter()
            if mixer is not None:
                mixer(batch["image"], batch["target"])
            t2 = time.perf_counter()
            if round_ >= args.warmup:
                step_times[name].append(t1 - t0)
                mix_times[name].append(t2 - t1)

    base = statistics.median(step_times["none"])
    base_min = min(step_times["none"])
    print(
        f"backbone={args.backbone} batch={b} size={s} steps={args.steps} "
        f"threads={torch.get_num_threads()} (CPU shared: figures are noisy under load)"
    )
    # ratio: median step vs median unmixed step; min ratio: fastest vs fastest (less sensitive to other load);
    # intrinsic: (unmixed step + mixer call alone) / unmixed step.
    print(f"{'mixer':<10} {'step ms':>9} {'ratio':>7} {'min ratio':>9} {'mixer ms':>9} {'intrinsic':>9}")
    for name in mixers:
        med = statistics.median(step_times[name])
        mix_ms = statistics.median(mix_times[name]) * 1e3 if name != "none" else 0.0
        print(
            f"{name:<10} {med * 1e3:9.1f} {med / base:7.3f} {min(step_times[name]) / base_min:9.3f} "
            f"{mix_ms:9.2f} {1 + mix_ms / (base * 1e3):9.3f}"
        )


if __name__ == "__main__":
    main()
