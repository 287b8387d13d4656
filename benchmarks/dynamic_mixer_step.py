"""Training-step time of the dynamic mixers (PuzzleMix, AutoMix) relative to CutMix and to no mixing.

One step is what Lightning runs: the method's loss (mixing included: PuzzleMix's saliency pass and graph cuts,
AutoMix's encoder and Mix Block passes), backward and an SGD step over every parameter group (the Mix Block's
too). Each mixer trains its own copy of the same network; the four are interleaved round by round, so load on
the machine hits them alike (``interleaved.py``). Two settings run in one process: the small-data study's recipe
(ResNet-10 at ``--image-size`` 64 px, ``--batch-size`` 64) and ResNet-50 at 224 px (batch ``--batch-224``; 64 on a
GPU, smaller on a CPU).

    python benchmarks/dynamic_mixer_step.py --steps 5 --batch-224 8        # CPU
    python benchmarks/dynamic_mixer_step.py --steps 20 --batch-224 64      # GPU
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from interleaved import add_step_options, print_ratios, random_batch, setup, time_steps

from wsol.augment import create_mixer
from wsol.methods import CAM

MIXERS = ("none", "cutmix", "puzzlemix", "automix")


def build(name: str, backbone: str, backbone_kwargs: dict[str, Any], num_classes: int, device: str) -> CAM:
    """A CAM with mixer ``name`` (same initial weights for every mixer)."""
    torch.manual_seed(0)
    mixer = None if name == "none" else create_mixer(name, seed=0)
    model = CAM(backbone, num_classes=num_classes, backbone_kwargs=backbone_kwargs, mixer=mixer, scale_lr=False)
    return model.to(device).train()


def run(label: str, backbone: str, kwargs: dict[str, Any], batch: int, size: int, args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    modules = {name: build(name, backbone, kwargs, args.num_classes, device) for name in MIXERS}
    data = {k: v.to(device) for k, v in random_batch(batch, size, args.num_classes).items()}
    times = time_steps(
        modules,
        data,
        args.steps,
        args.warmup,
        lambda m, b: m.loss(b)[0],
        # every parameter group, the Mix Block's too
        optimizer=lambda m: torch.optim.SGD(m.parameter_groups(), lr=0.01, momentum=0.9),
        before_step=lambda m, round_: m.seed_step(0, round_),  # a fresh mix per round, as training reseeds per batch
    )
    heading = f"\n{label}: {backbone} {size} px, batch {batch}, {args.steps} timed rounds, device {device},"
    print_ratios(times, ("none", "cutmix"), heading, "mixer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_options(parser, steps=5, warmup=1)
    parser.add_argument("--batch-224", type=int, default=8, help="batch of the ResNet-50 224 px setting")
    parser.add_argument("--skip-224", action="store_true", help="only the study's recipe")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    args = parser.parse_args()
    setup(args)
    study = {"stem_stride": 2, "last_stride": 2, "width": 32}  # wsol.training.recipes.SMALL_DATA's ResNet-10
    run("study recipe", "resnet10", study, args.batch_size, args.image_size, args)
    if not args.skip_224:
        run("ImageNet size", "resnet50", {}, args.batch_224, 224, args)


if __name__ == "__main__":
    main()
