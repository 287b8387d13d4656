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
from interleaved import add_step_options, random_batch, setup

from wsol.augment import create_mixer, list_mixers
from wsol.augment.base import Mixer
from wsol.methods.base import WSOLModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10")
    add_step_options(parser, steps=20, warmup=3)
    args = parser.parse_args()
    setup(args)

    module = WSOLModule(args.backbone, num_classes=args.num_classes, scale_lr=False)
    module.train()
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    b, s = args.batch_size, args.image_size
    batch = random_batch(b, s, args.num_classes)
    built = {name: create_mixer(name, seed=0) for name in list_mixers()}
    # The dynamic mixers read the training method (PuzzleMix its network, AutoMix the modules it was built with),
    # so a mixer swapped onto one module cannot stand for them: benchmarks/dynamic_mixer_step.py times them.
    dynamic = [name for name, m in built.items() if type(m).mix_batch is not Mixer.mix_batch]
    mixers = {"none": None} | {name: m for name, m in built.items() if name not in dynamic}
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
    print(f"stateless mixers; {', '.join(dynamic)} (dynamic): benchmarks/dynamic_mixer_step.py")
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
