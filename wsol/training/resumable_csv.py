"""A CSV logger whose ``metrics.csv`` survives a resumed run instead of being deleted by it.

Lightning's :class:`~pytorch_lightning.loggers.CSVLogger` deletes ``metrics.csv`` when its folder is not empty;
with the folder fixed so that ``wsol train --ckpt_path last`` finds everything where it left it, a resumed run
would lose every row written before the kill. This logger keeps those rows, minus the ones the resumed run
is about to write again: a run resumed from the checkpoint of epoch E - 1 replays epoch E onwards, so the
kept file's rows of epoch E and later are dropped when the first new row (of epoch E) is written.
"""

from __future__ import annotations

import csv
from typing import Any

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

__all__ = ["ResumableCSVLogger"]


class _ContinuingWriter(ExperimentWriter):
    """Writes after the rows already in ``metrics.csv`` that come before the first epoch it writes."""

    def _check_log_dir_exists(self) -> None:
        # Called by the parent's __init__ where the stock writer deletes metrics.csv: read it instead.
        self._kept: list[dict[str, Any]] | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                reader = csv.DictReader(file)
                self._kept = list(reader)
                self.metrics_keys = sorted(reader.fieldnames or [])

    def save(self) -> None:
        if self._kept is not None and self.metrics:
            epochs = [m["epoch"] for m in self.metrics if m.get("epoch") is not None]
            first = min(epochs) if epochs else None
            rows = [r for r in self._kept if first is None or not r.get("epoch") or float(r["epoch"]) < first]
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows)
            self._kept = None
        super().save()


class ResumableCSVLogger(CSVLogger):
    """:class:`~pytorch_lightning.loggers.CSVLogger` that, with ``resume=True``, continues an existing ``metrics.csv``.

    Args:
        *args: :class:`~pytorch_lightning.loggers.CSVLogger` arguments (``save_dir``, ``name``, ``version``...).
        resume: keep the rows of earlier epochs already in the folder's ``metrics.csv`` (see the module docstring);
            False behaves as the stock logger, which starts the file afresh.
        **kwargs: further :class:`~pytorch_lightning.loggers.CSVLogger` arguments.
    """

    def __init__(self, *args: Any, resume: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume = resume

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.resume:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return super().experiment
