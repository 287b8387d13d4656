"""The training room: what ``wsol fit`` (and ``validate``, ``test``, ``predict``) adds around Lightning.

* :mod:`~wsol.training.lightning_cli`: the LightningCLI over every method and datamodule (:func:`train`,
  :func:`run_stage`), with a fixed-folder ``last.ckpt`` and logger so that a crashed run resumes exactly;
* :mod:`~wsol.training.callbacks`: :class:`SafeNameCheckpoint`, checkpoint file names safe for ``val/...`` metrics;
* :mod:`~wsol.training.resumable_csv`: the CSV logger that keeps the rows of the epochs before a resume;
* :mod:`~wsol.training.prediction`: ``wsol predict``'s writer of the reference layout;
* :mod:`~wsol.training.quiet`: Lightning's advertising and unactionable warnings filtered;
* :mod:`~wsol.training.recipes`: the ResNet-10 small-data recipes (the study, ``wsol quickstart``, a YAML).

Names are loaded on first use, so importing the package (``import wsol`` does, for the quiet filters) imports
neither torch nor Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "WSOLCLI": "lightning_cli",
    "run_stage": "lightning_cli",
    "train": "lightning_cli",
    "SafeNameCheckpoint": "callbacks",
    "ResumableCSVLogger": "resumable_csv",
    "ReferenceLayoutWriter": "prediction",
    "quiet_lightning": "quiet",
    "QUICKSTART": "recipes",
    "SMALL_DATA": "recipes",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"wsol.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'wsol.training' has no attribute {name!r}")
