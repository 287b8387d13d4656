"""The LightningDataModule over any registered dataset reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from wsol.data.batching import collate
from wsol.data.datasets import SampleDataset, read_dataset
from wsol.data.sampling import EpochSampler, SeededSamples, ShardSampler
from wsol.data.transforms import EvalTransform, TrainTransform
from wsol.models.backbone import IMAGENET_MEAN, IMAGENET_STD


class WSOLDataModule(pl.LightningDataModule):
    """Train/val loaders for a registered dataset with the library's albumentations pipelines.

    Args:
        dataset: reader name (``"synthetic"``, ``"tiny_imagenet"``, ... see
            :func:`wsol.data.list_readers`).
        root: dataset folder (default: the reader's, e.g. ``$WSOL_DATA/tiny_imagenet_10``).
        image_size: side of the square training and evaluation images.
        batch_size: images per batch.
        num_workers: loader worker processes.
        train_scale: area range of the random resized crop.
        eval_resize: ``"pil"`` (the reference protocol's bilinear resize) or ``"cv2"``.
        val_split: which split the validation loader reads.
        train_options: options for the reader of the training split (e.g. ``limit_per_class``).
        val_options: options for the reader of the validation split.
        mean: normalisation mean.
        std: normalisation std.
        seed: seed of the training loader's shuffling and augmentation: epoch ``e``'s order is a function of
            ``(seed, e)`` and sample ``i``'s crop and flip of ``(seed, e, i)`` (see :mod:`wsol.data.sampling`),
            so a run resumed at any epoch replays that epoch exactly.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | Path | None = None,
        image_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        train_scale: tuple[float, float] = (0.5, 1.0),
        eval_resize: Literal["pil", "cv2"] = "pil",
        val_split: str = "val",
        train_options: dict[str, Any] | None = None,
        val_options: dict[str, Any] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.root = dataset, root
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.train_scale, self.eval_resize, self.val_split = tuple(train_scale), eval_resize, val_split
        self.train_options, self.val_options = dict(train_options or {}), dict(val_options or {})
        self.mean, self.std, self.seed = tuple(mean), tuple(std), seed
        self.train_set: SampleDataset | None = None
        self.val_set: SampleDataset | None = None
        self._resume_epoch = 0

    def _read(self, split: str, options: dict[str, Any]) -> SampleDataset:
        return read_dataset(self.dataset, self.root, split, **options)

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (reads the validation split's class list if needed)."""
        return len(self.class_names)

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.val_set is None:
            self.val_set = self._eval_dataset()
        return self.val_set.class_names

    @property
    def multilabel(self) -> bool:
        return self.class_names is not None and self.val_set.multilabel

    def _eval_dataset(self) -> SampleDataset:
        ds = self._read(self.val_split, self.val_options)
        ds.transform = EvalTransform(self.image_size, ds.num_classes, self.eval_resize, self.mean, self.std)
        return ds

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            ds = self._read("train", self.train_options)
            ds.transform = TrainTransform(self.image_size, ds.num_classes, self.train_scale, self.mean, self.std)
            self.train_set = ds
        if self.val_set is None:
            self.val_set = self._eval_dataset()

    def _loader(self, ds: SampleDataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        if not shuffle:
            sampler = None
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                if torch.distributed.get_world_size() > 1:  # every image once on any number of ranks, no padding
                    sampler = ShardSampler(ds)
            return DataLoader(
                ds,
                batch_size=self.batch_size,
                sampler=sampler,
                num_workers=self.num_workers,
                collate_fn=collate,
                persistent_workers=self.num_workers > 0,
            )
        sampler = EpochSampler(len(ds), seed=self.seed, epoch=max(self._fit_epoch(), self._resume_epoch))
        return DataLoader(
            SeededSamples(ds, seed=self.seed),
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
            # Only the workers' base seed comes from it; without one, each new iterator would draw from the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=len(ds) > self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def _fit_epoch(self) -> int:
        """The epoch a fit is at (0 without a trainer): the value Lightning passes to ``set_epoch``."""
        fit_loop = getattr(self.trainer, "fit_loop", None)
        return int(fit_loop.epoch_progress.current.processed) if fit_loop is not None else 0

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed state: the epoch at which a fit resumed from this checkpoint starts shuffling."""
        return {"train_epoch": self._fit_epoch()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning builds the training iterator (to count the steps for the LR schedule) before it restores the
        # loops and calls set_epoch, and does not rebuild it for the first resumed epoch. With workers that
        # iterator has already read the sampler's order, so the sampler must start at the resumed epoch.
        # (Strategies that restore after setup, e.g. FSDP or DeepSpeed, call this too late for that.)
        self._resume_epoch = int(state_dict.get("train_epoch", 0))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
