"""Datasets of :class:`~wsol.data.schema.Sample` and the registry of dataset readers.

A reader is a function ``(root, split, **options) -> SampleDataset``. The datamodule looks readers up
by name, so a new dataset family is one registered function.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from wsol.data.schema import Sample
from wsol.registry import Registry


class SampleDataset(Dataset):
    """A dataset whose items are :class:`Sample` objects, optionally transformed to tensors.

    Subclasses implement ``__len__`` and :meth:`load`; :class:`ListDataset` serves samples already in
    memory.

    Attributes:
        class_names: one name per class index.
        multilabel: whether images carry several labels.
    """

    class_names: tuple[str, ...] = ()
    multilabel: bool = False
    transform: Callable[[Sample], Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        sample = self.load(index)
        return sample if self.transform is None else self.transform(sample)


class ListDataset(SampleDataset):
    """Samples held in memory (generated data, small subsets)."""

    def __init__(self, samples: Sequence[Sample], class_names: Sequence[str], multilabel: bool = False) -> None:
        self.samples = list(samples)
        self.class_names = tuple(class_names)
        self.multilabel = multilabel
        for s in self.samples:
            if max(s.labels) >= len(self.class_names):
                raise ValueError(f"{s.image_id}: label {max(s.labels)} is not one of {len(self.class_names)} classes")

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Sample:
        return self.samples[index]


Reader = Callable[..., SampleDataset]
_BUILTIN = ("coco", "folder", "synthetic", "tiny_imagenet", "voc", "wsoleval")


def _load_builtin_readers() -> None:
    # The built-in readers register on import; importing them on first use keeps `import wsol.data` light.
    for module in _BUILTIN:
        importlib.import_module(f"wsol.data.{module}")


READERS: Registry[Reader] = Registry("dataset reader", loader=_load_builtin_readers)


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Register a dataset reader under ``name`` (:data:`READERS`); a duplicate name raises ``ValueError``."""
    return READERS.register(name)


def list_readers() -> list[str]:
    """Registered dataset names, sorted."""
    return READERS.names()


def read_dataset(name: str, root: str | Path | None, split: str, **options: Any) -> SampleDataset:
    """Read ``split`` of the dataset ``name`` from ``root`` with its registered reader."""
    return READERS.get(name)(root, split, **options)


def resolve_root(root: str | Path | None, folder: str) -> Path:
    """The dataset folder: ``root`` if given, else ``$WSOL_DATA/<folder>``.

    Raises:
        FileNotFoundError: naming the folder that is missing and how to point to it.
    """
    if root is None:
        base = os.environ.get("WSOL_DATA")
        if base is None:
            raise FileNotFoundError(
                f"no data folder given for {folder!r}: pass the dataset folder (root=, or the command's data "
                f"path option) or set WSOL_DATA to the folder that holds {folder}/"
            )
        root = Path(base) / folder
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder not found: {path}")
    return path
