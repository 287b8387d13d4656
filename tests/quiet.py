"""A quiet CPU Lightning Trainer for the tests and for the scripts that Lightning's DDP launcher re-executes.

No logger, progress bar, model summary or checkpoint unless a keyword asks for one; every other keyword goes to
``pl.Trainer`` as given. The scripts run as ``python tests/<script>.py``, so this folder is on their import path,
as it is on pytest's.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

QUIET: dict[str, Any] = {
    "accelerator": "cpu",
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
}


def quiet_trainer(**overrides: Any) -> pl.Trainer:
    """``pl.Trainer(**QUIET)`` with ``overrides`` taking precedence."""
    return pl.Trainer(**{**QUIET, **overrides})
