"""Lightning vs a bare PyTorch loop: time per image of ResNet-10 CAM training at 64 px on CPU.

Both loops train the same model (same initial weights) on the same demo batches with the same optimizer
and schedule; only the driver differs. Lightning runs as ``wsol quickstart`` runs it (progress bar,
CSV logger, per-step logging), without validation. Prints images/s of each and the time ratio.

    python benchmarks/train_overhead.py [--steps 60] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from wsol.data import WSOLDataModule
from wsol.methods import CAM


def _model(num_classes: int) -> CAM:
    return CAM(
        backbone="resnet10",
        backbone_kwargs={"stem_stride": 2, "last_stride": 1, "width": 32},
        num_classes=num_classes,
        lr=0.4,
        weight_decay=5e-4,
        label_smoothing=0.1,
    )


def bare_loop(model: CAM, batches: list[dict], epochs: int) -> float:
    """Seconds for ``epochs`` passes over ``batches`` with a hand-written loop."""
    model.train()
    opt = torch.optim.SGD(model.parameter_groups(), lr=model.effective_lr(), momentum=0.9)
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in _loader(batches):
            loss, _ = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


class _Batches(pl.LightningDataModule):
    def __init__(self, batches: list[dict], batch_size: int) -> None:
        super().__init__()
        self.batches, self.batch_size = batches, batch_size

    def train_dataloader(self) -> DataLoader:
        return _loader(self.batches)


def _loader(batches: list[dict]) -> DataLoader:
    # batch_size=None: the items already are batches (a bare list would read as several dataloaders).
    return DataLoader(batches, batch_size=None, shuffle=False)


class _EpochTimer(pl.Callback):
    """Wall time of the training epochs alone, without ``fit``'s one-off setup and teardown."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds += time.perf_counter() - self._start


def lightning_loop(model: CAM, batches: list[dict], epochs: int, batch_size: int) -> tuple[float, float]:
    """Seconds of the training epochs and of the whole ``pl.Trainer.fit`` call over ``batches``."""
    timer = _EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=CSVLogger(tmp),
            log_every_n_steps=10,
            limit_val_batches=0,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=tmp,
            callbacks=[timer],
        )
        start = time.perf_counter()
        trainer.fit(model, datamodule=_Batches(batches, batch_size))
        return timer.seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    args = parser.parse_args()

    pl.seed_everything(0, verbose=False)
    dm = WSOLDataModule("synthetic", image_size=64, batch_size=args.batch_size)
    dm.setup("fit")
    # Pre-materialised batches: both drivers see identical tensors and no data-loading cost.
    batches: list[dict] = []
    while len(batches) < args.steps:
        batches.extend(dm.train_dataloader())
    batches = batches[: args.steps]
    reference = _model(dm.num_classes)
    reference.hparams.batch_size = args.batch_size
    bare_loop(copy.deepcopy(reference), batches[:3], 1)  # warm-up: allocator, thread pool

    bare, light, whole = [], [], []
    for _ in range(args.repeats):  # alternate, so load changes hit both drivers alike
        bare.append(bare_loop(copy.deepcopy(reference), batches, 1))
        epoch_s, fit_s = lightning_loop(copy.deepcopy(reference), batches, 1, args.batch_size)
        light.append(epoch_s)
        whole.append(fit_s)
    images = args.steps * args.batch_size
    b, li = min(bare), min(light)
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, pl {pl.__version__}")
    print(f"bare PyTorch loop : {images / b:7.1f} images/s  ({1000 * b / images:.2f} ms/image)")
    print(f"Lightning Trainer : {images / li:7.1f} images/s  ({1000 * li / images:.2f} ms/image)")
    print(f"time per image, Lightning / bare = {li / b:.3f}x  (target <= 1.10x)")
    setup = min(w - e for w, e in zip(whole, light, strict=True))
    print(f"one-off fit() setup + teardown: {setup:.2f} s (not per image)")


if __name__ == "__main__":
    main()
