"""Data layer: one sample schema, readers, albumentations pipelines, collate and datamodule."""

from wsol.data import coco, folder, synthetic, tiny_imagenet, voc, wsoleval  # noqa: F401  (registers the readers)
from wsol.data.collate import collate
from wsol.data.datamodule import WSOLDataModule
from wsol.data.datasets import (
    ListDataset,
    SampleDataset,
    list_readers,
    read_dataset,
    register_reader,
    resolve_root,
)
from wsol.data.schema import IGNORE_INDEX, Sample, validate_sample
from wsol.data.synthetic import SyntheticConfig
from wsol.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "IGNORE_INDEX",
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
