"""Data layer: one sample schema, readers, albumentations pipelines, collate and datamodule.

Names load on first use (PEP 562): the metadata parsers that the torch-free evaluator reads
(:mod:`wsol.data.wsoleval_metadata`, :mod:`wsol.data._io`) never pull in torch. The built-in readers register
themselves the first time the reader registry is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "IGNORE_INDEX",
    "READERS",
    "EvalTransform",
    "ListDataset",
    "Sample",
    "SampleDataset",
    "SyntheticConfig",
    "TrainTransform",
    "WSOLDataModule",
    "collate",
    "list_readers",
    "read_dataset",
    "register_reader",
    "resolve_root",
    "validate_sample",
]

_WHERE = {
    "collate": "batching",
    "WSOLDataModule": "datamodule",
    "ListDataset": "datasets",
    "READERS": "datasets",
    "SampleDataset": "datasets",
    "list_readers": "datasets",
    "read_dataset": "datasets",
    "register_reader": "datasets",
    "resolve_root": "datasets",
    "IGNORE_INDEX": "schema",
    "Sample": "schema",
    "validate_sample": "schema",
    "SyntheticConfig": "synthetic",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'wsol.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"wsol.data.{_WHERE[name]}"), name)
