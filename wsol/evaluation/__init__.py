"""Evaluation driver behind ``wsol evaluate``: input sources (metadata folders, npz), parallel runs, plots.

The metrics themselves live in :mod:`wsol.metrics` and do no I/O; this package reads files and
spreads images over processes.
"""

from wsol.evaluation.runner import EvaluationResult, evaluate
from wsol.evaluation.sources import ImageInput, MetadataSource, NpzSource, Source

__all__ = ["EvaluationResult", "ImageInput", "MetadataSource", "NpzSource", "Source", "evaluate"]
