"""The study's splits: a seeded, disjoint tuning split carved out of train, and seeded per-class subsets.

The Tiny ImageNet reader's ``limit_per_class`` keeps the first images in file order, which would put the
same images in the tuning split and the subset; here every selection is a seeded permutation per class,
so the tuning split, the training pool and each regime's subset are fixed, disjoint and reproducible.
The images are read into memory once (Tiny ImageNet 10 at 64 px is about 70 MB) and shared by every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from wsol.data import EvalTransform, ListDataset, Sample, SampleDataset, TrainTransform, collate, read_dataset

__all__ = ["PER_REGIME_KEYS", "StudyData", "load_study_data", "split_per_class"]

#: The entries of :attr:`StudyData.description` that depend on the regimes a study was invoked with.
PER_REGIME_KEYS = ("regimes", "n_train")


def split_per_class(labels: Sequence[int], take: int | None, seed: int) -> tuple[list[int], list[int]]:
    """Pick ``take`` indices of every class at random (seeded); return ``(picked, rest)`` in index order.

    Args:
        labels: Class index of every item.
        take: Items per class to pick; None picks every item.
        seed: Seed of the per-class permutations (the same seed always picks the same items).

    Raises:
        ValueError: A class has fewer than ``take`` items.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if take is None:
            picked.extend(members.tolist())
            continue
        if len(members) < take:
            raise ValueError(f"class {int(c)} has {len(members)} items, fewer than the {take} asked for")
        picked.extend(rng.permutation(members)[:take].tolist())
    chosen = set(picked)
    return sorted(picked), [i for i in range(len(labels)) if i not in chosen]


def _samples(dataset: SampleDataset) -> list[Sample]:
    # Readers that hold samples in memory (the synthetic set) are used as they are; others are read once.
    if isinstance(dataset, ListDataset):
        return list(dataset.samples)
    return [dataset.load(i) for i in range(len(dataset))]


@dataclass
class StudyData:
    """The samples of one study: training pool, tuning split, validation split and the regimes.

    Attributes:
        class_names: One name per class.
        pool: Training samples left after the tuning split was taken out.
        tune: Tuning split (from train, with boxes): hyper-parameters and τ are chosen here.
        val: The validation split, reported once.
        regimes: Regime name -> indices into ``pool`` of its training images.
        image_size: Side of the square training and evaluation images.
        description: Where the data came from and how it was split (recorded in every result).
    """

    class_names: tuple[str, ...]
    pool: list[Sample]
    tune: list[Sample]
    val: list[Sample]
    regimes: dict[str, list[int]]
    image_size: int
    description: dict[str, Any]

    @property
    def eval_description(self) -> dict[str, Any]:
        """The description without its per-regime entries (:data:`PER_REGIME_KEYS`): what the tuning and val
        splits depend on. Rows scored on those splits alone (the reference rows) are keyed by it, so a study
        invoked with fewer regimes reuses them."""
        return {k: v for k, v in self.description.items() if k not in PER_REGIME_KEYS}

    def regime_samples(self, regime: str, boxes: Sequence[np.ndarray] | None = None) -> list[Sample]:
        """The regime's pool images with their GT boxes and masks dropped, or replaced by ``boxes``.

        New samples are built without reading the originals' boxes or masks, so a row that must never see a
        training image's localization annotation (the pseudo-box localizer) can rely on it.

        Args:
            regime: Regime whose subset of the pool is returned, in the order of ``regimes[regime]``.
            boxes: One ``(k, 4)`` array of inclusive boxes per image, in that image's pixels (e.g. pseudo boxes);
                None gives every image an empty box list (class labels only).

        Raises:
            ValueError: ``boxes`` does not have one entry per image of the regime.
        """
        indices = self.regimes[regime]
        if boxes is not None and len(boxes) != len(indices):
            raise ValueError(
                f"boxes must have one entry per image of regime {regime!r} ({len(indices)}), got {len(boxes)}"
            )
        out = []
        for n, i in enumerate(indices):
            new = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes[n], np.float32).reshape(-1, 4)
            # replace() reads every field except those it is given: the GT boxes and mask are never touched.
            out.append(dataclasses.replace(self.pool[i], boxes=new, mask=None))
        return out

    def train_loader(
        self,
        regime: str,
        batch_size: int,
        seed: int,
        scale: Sequence[float],
        split: str = "regime",
        boxes: Sequence[np.ndarray] | None = None,
    ) -> DataLoader:
        """Shuffled, augmented loader over training images (shuffling and crops seeded by ``seed``).

        Args:
            regime: Regime whose subset of the pool is trained on.
            batch_size: Batch size.
            seed: Seed of shuffling and augmentation.
            scale: Area range of the random crop.
            split: ``"regime"`` (the regime's images; their GT boxes go through the crop but no WSOL loss reads
                them), ``"tune"`` (the box-labelled tuning split, for the few-shot fully supervised reference row),
                ``"labels"`` (the regime's images with their GT boxes and masks dropped: the same images, order and
                crops as ``"regime"``) or ``"pseudo"`` (the regime's images with ``boxes`` in place of their GT
                boxes).
            boxes: For ``"pseudo"`` only: one ``(k, 4)`` inclusive box array per image of the regime, in the
                order of ``regimes[regime]`` (see :meth:`regime_samples`).
        """
        import torch

        k = len(self.class_names)
        if split not in ("regime", "tune", "labels", "pseudo"):
            raise ValueError(f"split must be 'regime', 'tune', 'labels' or 'pseudo', got {split!r}")
        if (boxes is not None) != (split == "pseudo"):
            raise ValueError(f"boxes must be given with split 'pseudo' and only then, got split {split!r}")
        if split == "regime":
            samples = [self.pool[i] for i in self.regimes[regime]]
        elif split == "tune":
            samples = list(self.tune)
        else:
            samples = self.regime_samples(regime, boxes)
        dataset = ListDataset(samples, self.class_names)
        dataset.transform = TrainTransform(self.image_size, k, tuple(scale))
        # albumentations 2 draws from its own generator, which seed_everything does not reach.
        if hasattr(dataset.transform.pipeline, "set_random_seed"):
            dataset.transform.pipeline.set_random_seed(seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
            drop_last=len(dataset) > batch_size,
        )

    def eval_loader(self, split: str, batch_size: int = 100) -> DataLoader:
        """Loader with the reference protocol's evaluation transform, in a fixed order.

        Args:
            split: ``"tune"``, ``"val"``, or ``"regime:<name>"`` for a regime's training images with their GT boxes
                and masks dropped (:meth:`regime_samples`), e.g. to make pseudo boxes from a model's maps.
            batch_size: Batch size.
        """
        if split.startswith("regime:"):
            samples = self.regime_samples(split.removeprefix("regime:"))
        elif split in ("tune", "val"):
            samples = {"tune": self.tune, "val": self.val}[split]
        else:
            raise ValueError(f"split must be 'tune', 'val' or 'regime:<name>', got {split!r}")
        dataset = ListDataset(samples, self.class_names)
        dataset.transform = EvalTransform(self.image_size, len(self.class_names))
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


def load_study_data(
    dataset: str = "tiny_imagenet",
    root: str | Path | None = None,
    image_size: int = 64,
    tune_per_class: int = 50,
    regimes: Mapping[str, int | None] | None = None,
    split_seed: int = 0,
    train_options: Mapping[str, Any] | None = None,
    val_options: Mapping[str, Any] | None = None,
) -> StudyData:
    """Read a single-label dataset with boxes and split it for the study.

    Args:
        dataset: Registered reader name (``"tiny_imagenet"``; ``"synthetic"`` for tests).
        root: Dataset folder (default: the reader's, e.g. ``$WSOL_DATA/tiny_imagenet_10``).
        image_size: Side of the training and evaluation images.
        tune_per_class: Training images per class moved to the tuning split.
        regimes: Regime name -> training images per class (None: the whole pool). Default
            ``{"all": None, "n300": 300}``.
        split_seed: Seed of the tuning split and of the regimes' subsets (fixed across run seeds).
        train_options: Extra options of the reader's train split.
        val_options: Extra options of the reader's val split.
    """
    regimes = dict(regimes if regimes is not None else {"all": None, "n300": 300})
    train = _samples(read_dataset(dataset, root, "train", **dict(train_options or {})))
    val_set = read_dataset(dataset, root, "val", **dict(val_options or {}))
    val = _samples(val_set)
    if len(val_set.class_names) < 2:
        # One class leaves nothing to classify (and crashed inside training): refuse it up front.
        raise ValueError(f"{root or dataset}: the study needs at least 2 classes, found {len(val_set.class_names)}")
    for name, samples in (("train", train), ("val", val)):
        if not samples or any(len(s.labels) != 1 or len(s.boxes) == 0 for s in samples):
            raise ValueError(f"the study needs single-label images with boxes; the {name} split is not")
    labels = [s.labels[0] for s in train]
    tune_idx, pool_idx = split_per_class(labels, tune_per_class, split_seed)
    pool = [train[i] for i in pool_idx]
    pool_labels = [labels[i] for i in pool_idx]
    # Each regime draws its own subset with a seed derived from split_seed, independent of the others.
    chosen = {
        name: split_per_class(pool_labels, per_class, split_seed + 1 + n)[0]
        for n, (name, per_class) in enumerate(regimes.items())
    }
    return StudyData(
        class_names=tuple(val_set.class_names),
        pool=pool,
        tune=[train[i] for i in tune_idx],
        val=val,
        regimes=chosen,
        image_size=image_size,
        description={
            "dataset": dataset,
            "split_seed": split_seed,
            "tune_per_class": tune_per_class,
            "regimes": regimes,
            "n_tune": len(tune_idx),
            "n_val": len(val),
            "n_train": {name: len(idx) for name, idx in chosen.items()},
        },
    )
