"""Quiet output: Lightning's advertising tips and known, unactionable deprecation warnings are filtered at the source.

:func:`quiet_lightning` runs when :mod:`wsol` is imported. It adds a filter to Lightning's rank-zero
logger that drops only the lines starting with "💡 Tip" (suggestions to install other products). It also ignores
the ``LeafSpec`` deprecation (a FutureWarning from torch) that ``pytorch_lightning.utilities._pytree``
triggers inside every training step, and, under DDP, Lightning's advice to ``sync_dist`` the ``val/`` metrics
(they are torchmetrics values, synced already).
Every other message, warning and error is left alone.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_lightning"]

_TIP = "💡 Tip"
_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP)


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    # Under DDP Lightning asks for sync_dist on every epoch-level tensor; wsol's val/ tensors come from
    # torchmetrics' compute(), already summed over ranks (averaging them again could even round them).
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val/")
