"""Training-step time of the dynamic mixers (PuzzleMix, AutoMix) relative to CutMix and to no mixing.

One step is what Lightning runs: the method's loss (mixing included: PuzzleMix's saliency pass and graph cuts,
AutoMix's encoder and Mix Block passes), backward and an SGD step over every parameter group (the Mix Block's
too). Each mixer trains its own copy of the same network; the four are interleaved round by round, so load on
the machine hits them alike. Two settings run in one process: the small-data study's recipe (ResNet-10 at 64 px,
batch 64) and ResNet-50 at 224 px (batch ``--batch-224``; 64 on a GPU, smaller on a CPU).

    python benchmarks/dynamic_mixer_step.py --steps 5 --batch-224 8        # CPU
    python benchmarks/dynamic_mixer_step.py --steps 20 --batch-224 64      # GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from wsol.augment import create_mixer
from wsol.methods import CAM

MIXERS = ("none", "cutmix", "puzzlemix", "automix")


def build(name: str, backbone: str, backbone_kwargs: dict[str, Any], num_classes: int, device: str) -> Any:
    """A CAM with mixer ``name`` (same initial weights for every mixer) and its SGD optimizer."""
    torch.manual_seed(0)
    mixer = None if name == "none" else create_mixer(name, seed=0)
    model = CAM(backbone, num_classes=num_classes, backbone_kwargs=backbone_kwargs, mixer=mixer, scale_lr=False)
    model = model.to(device).train()
    return model, torch.optim.SGD(model.parameter_groups(), lr=0.01, momentum=0.9)


def step(model: Any, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], device: str) -> float:
    """Seconds of one training step (synchronised on a GPU)."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss, _ = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(label: str, backbone: str, kwargs: dict[str, Any], batch: int, size: int, args: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    systems = {name: build(name, backbone, kwargs, args.num_classes, device) for name in MIXERS}
    g = torch.Generator().manual_seed(0)
    data = {
        "image": torch.randn(batch, 3, size, size, generator=g).to(device),
        "target": torch.eye(args.num_classes)[torch.randint(args.num_classes, (batch,), generator=g)].to(device),
    }
    times: dict[str, list[float]] = {name: [] for name in MIXERS}
    for round_ in range(args.warmup + args.steps):
        for name, (model, opt) in systems.items():
            model.seed_step(0, round_)  # a fresh mix per round, as training reseeds per batch
            seconds = step(model, opt, data, device)
            if round_ >= args.warmup:
                times[name].append(seconds)
    base, cut = statistics.median(times["none"]), statistics.median(times["cutmix"])
    print(f"\n{label}: {backbone} {size} px, batch {batch}, {args.steps} timed rounds, device {device}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'mixer':<10} {'step ms':>9} {'min ms':>9} {'vs none':>8} {'vs cutmix':>9}")
    for name in MIXERS:
        med = statistics.median(times[name])
        print(f"{name:<10} {med * 1e3:9.1f} {min(times[name]) * 1e3:9.1f} {med / base:8.2f} {med / cut:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed rounds (one step per mixer each)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-224", type=int, default=8, help="batch of the ResNet-50 224 px setting")
    parser.add_argument("--skip-224", action="store_true", help="only the study's recipe")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = {"stem_stride": 2, "last_stride": 2, "width": 32}  # wsol.training.recipes.SMALL_DATA's ResNet-10
    run("study recipe", "resnet10", study, 64, 64, args)
    if not args.skip_224:
        run("ImageNet size", "resnet50", {}, args.batch_224, 224, args)


if __name__ == "__main__":
    main()
