"""Epoch-keyed shuffling and per-sample augmentation seeds for a training loader that resumes exactly.

:class:`EpochSampler` yields ``(epoch, index)`` keys in an order that depends on ``(seed, epoch)`` only;
:class:`SeededSamples` serves such a key with the sample's random crop and flip drawn from
``(seed, epoch, index)`` only. A run resumed at epoch E therefore sees epoch E exactly as the
uninterrupted run did, whatever was drawn before, and in whichever loader worker the sample lands: the
epoch travels with the key, so persistent workers need no message from the main process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from wsol.data.datasets import SampleDataset
from wsol.seeding import AUGMENT, ORDER, derive_seed

__all__ = ["EpochSampler", "SeededSamples", "ShardSampler"]


def _check_int(name: str, value: int, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise ValueError(f"{name} must be an int{'' if low is None else f' >= {low}'}, got {value!r}")


class EpochSampler(Sampler[tuple[int, int]]):
    """A random permutation of ``range(size)`` per epoch, a pure function of ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (also on a non-distributed
    sampler, and with ``DistributedSamplerWrapper`` forwarding it under DDP).

    Args:
        size: number of samples.
        seed: seed of the orders.
        epoch: epoch of the first iteration (see :meth:`set_epoch`).
    """

    def __init__(self, size: int, seed: int = 0, epoch: int = 0) -> None:
        _check_int("size", size, 0)
        _check_int("seed", seed)
        self.size, self.seed = size, seed
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield ``epoch``'s order."""
        _check_int("epoch", epoch, 0)
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        """The sample indices of ``epoch`` in the order they are served."""
        generator = torch.Generator().manual_seed(derive_seed(ORDER, self.seed, epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # read when the iteration starts: a later set_epoch does not change it halfway
        return ((epoch, index) for index in self.order(epoch))

    def __len__(self) -> int:
        return self.size


class SeededSamples(Dataset):
    """Items of a :class:`SampleDataset` keyed by ``(epoch, index)``, its transform seeded per item.

    The dataset's transform must take a ``seed`` keyword (as :class:`~wsol.data.transforms.TrainTransform`
    does); item ``(epoch, index)`` is transformed with seed ``derive_seed(AUGMENT, seed, epoch, index)``. A plain
    ``index`` (from a stock sampler, e.g. the sequential one Lightning puts in for ``overfit_batches``) is
    served as in epoch 0.

    Args:
        dataset: the samples and their transform.
        seed: seed of the augmentation.
    """

    def __init__(self, dataset: SampleDataset, seed: int = 0) -> None:
        _check_int("seed", seed)
        if dataset.transform is None:
            raise ValueError("dataset: SeededSamples needs a dataset with a transform that takes seed=")
        self.dataset, self.seed = dataset, seed

    def sample_seed(self, epoch: int, index: int) -> int:
        """Seed of the transform of sample ``index`` in ``epoch``."""
        return derive_seed(AUGMENT, self.seed, epoch, index)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.dataset.transform(self.dataset.load(index), seed=self.sample_seed(epoch, index))


class ShardSampler(DistributedSampler):
    """Evaluation sharding over ranks that sees every sample exactly once: rank ``r`` of ``n`` takes indices
    ``r, r + n, r + 2n, ...`` in order, with no padding.

    ``DistributedSampler`` pads the dataset to a multiple of the world size by repeating samples, so a metric
    summed over ranks would count those samples twice (500 images on 3 ranks: 501 scored). Ranks may then hold
    one sample more or less; metrics synced by summing their states are exact. Being a ``DistributedSampler``,
    Lightning keeps it instead of inserting its own.

    Args:
        dataset: the evaluation dataset.
        num_replicas: world size (default: the process group's).
        rank: this process's rank (default: the process group's).
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))
