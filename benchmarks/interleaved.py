"""Interleaved training-step timing shared by the step benchmarks (``seam_step``, ``method_step``,
``mixer_overhead``, ``dynamic_mixer_step``).

Every module takes one step in turn, round after round, so a change of background load hits them alike; the
median and the minimum step of each are compared with one or more baselines measured in the same run. A step is
the module's loss on one batch + backward + an optimizer update (on a GPU, synchronised before and after). The
scripts run as ``python benchmarks/<script>.py``, so this folder is on their import path.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def add_step_options(parser: argparse.ArgumentParser, steps: int = 10, warmup: int = 2) -> None:
    """``--batch-size``, ``--image-size``, ``--num-classes``, ``--steps``, ``--warmup`` and ``--threads``."""
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=steps, help="timed rounds (one step per module each)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def setup(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and seed torch (the same weights and batch in every run)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def random_batch(size: int, image_size: int, num_classes: int, boxes: bool = False) -> dict:
    """Random images and one-hot targets; with ``boxes``, also labels, one random box per image and image ids."""
    labels = torch.randint(num_classes, (size,))
    batch: dict = {"image": torch.randn(size, 3, image_size, image_size), "target": torch.eye(num_classes)[labels]}
    if boxes:
        corners = torch.randint(0, image_size // 2, (size, 2))
        side = image_size // 3
        batch["label"] = labels
        batch["boxes"] = [torch.tensor([[x, y, x + side, y + side]]) for x, y in corners.tolist()]
        batch["image_id"] = [f"random/{i}" for i in range(size)]
    return batch


def time_steps(
    modules: Mapping[str, torch.nn.Module],
    batch: dict,
    steps: int,
    warmup: int,
    loss: Callable[[torch.nn.Module, dict], torch.Tensor],
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None,
    before_step: Callable[[torch.nn.Module, int], object] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each module's timed steps (``loss(module, batch)`` + backward + optimizer step), interleaved by
    round.

    ``optimizer(module)`` builds each module's optimizer (default: SGD over its parameters, lr 1e-3, momentum 0.9);
    ``before_step(module, round)`` runs untimed before each step (e.g. to reseed a mixer per round).
    """
    make = optimizer or (lambda m: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9))
    optims = {name: make(m) for name, m in modules.items()}
    cuda = batch["image"].is_cuda
    times: dict[str, list[float]] = {name: [] for name in modules}
    for round_ in range(warmup + steps):
        for name, module in modules.items():
            if before_step is not None:
                before_step(module, round_)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            value = loss(module, batch)
            optims[name].zero_grad(set_to_none=True)
            value.backward()
            optims[name].step()
            if cuda:
                torch.cuda.synchronize()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def print_ratios(
    times: Mapping[str, list[float]], baseline: str | Sequence[str], heading: str, what: str = "method"
) -> None:
    """One line per module: median step ms, then for each baseline the median vs the baseline's median and the
    fastest vs the baseline's fastest."""
    bases = [baseline] if isinstance(baseline, str) else list(baseline)
    width = max(len(what), *map(len, times)) + 2
    cols = {b: (max(9, len(b) + 3), max(12, len(b) + 7)) for b in bases}  # widths of "vs b" and "min vs b"
    print(f"{heading} threads={torch.get_num_threads()} (CPU figures are noisy when other work shares the cores)")
    header = "".join(f" {'vs ' + b:>{cols[b][0]}} {'min vs ' + b:>{cols[b][1]}}" for b in bases)
    print(f"{what:<{width}} {'step ms':>9}{header}")
    for name, values in times.items():
        med, fastest = statistics.median(values), min(values)
        ratios = "".join(
            f" {med / statistics.median(times[b]):{cols[b][0]}.2f} {fastest / min(times[b]):{cols[b][1]}.2f}"
            for b in bases
        )
        print(f"{name:<{width}} {med * 1e3:9.1f}{ratios}")
