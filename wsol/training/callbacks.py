"""Checkpoint file names safe for wsol's metric names.

wsol logs ``val/MaxBoxAccV2``; Lightning's ``ModelCheckpoint`` with ``filename="{epoch}-{val/MaxBoxAccV2:.2f}"``
would write ``epoch=3-val/MaxBoxAccV2=59.67.ckpt``, i.e. into a ``val`` subfolder. :func:`safe_checkpoint_names`
configures a ``ModelCheckpoint`` through its own options so that the name reads ``epoch=3-val_MaxBoxAccV2=59.67``:
the metric names are spelt out in ``filename`` with ``/`` as ``_`` and ``auto_insert_metric_name`` is turned off.
:class:`SafeNameCheckpoint` is a ``ModelCheckpoint`` configured so from the start; ``wsol fit`` configures every
plain ``ModelCheckpoint`` of a config the same way.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from pytorch_lightning import callbacks as pl_callbacks

__all__ = ["SafeNameCheckpoint", "safe_checkpoint_names", "safe_metric_name", "spell_out_metric_names"]

_FIELD = re.compile(r"\{([^}:]*)")  # a format field's name, as Lightning finds it: "{name" up to ":" or "}"


def safe_metric_name(name: str) -> str:
    """``val/MaxBoxAccV2`` -> ``val_MaxBoxAccV2``: a metric name usable inside a file name."""
    return name.replace("/", "_")


def spell_out_metric_names(filename: str, equals: str = "=") -> str:
    """``"{epoch}-{val/MaxBoxAccV2:.2f}"`` -> ``"epoch={epoch}-val_MaxBoxAccV2={val/MaxBoxAccV2:.2f}"``.

    Each field gets the name Lightning's ``auto_insert_metric_name`` would put before it, with ``/`` as ``_``;
    the fields themselves keep the logged names, so the values are looked up as before."""
    return _FIELD.sub(lambda m: f"{safe_metric_name(m.group(1))}{equals}{{{m.group(1)}", filename)


def safe_checkpoint_names(callback: pl_callbacks.ModelCheckpoint) -> pl_callbacks.ModelCheckpoint:
    """Configure ``callback`` (in place, and return it) so that no metric name in its ``filename`` makes a folder.

    Only a ``filename`` with a ``/`` in a field name under ``auto_insert_metric_name`` changes; the file names it
    gives are Lightning's with ``/`` as ``_`` in the inserted metric names."""
    filename = callback.filename
    if filename and callback.auto_insert_metric_name and any("/" in n for n in _FIELD.findall(filename)):
        callback.filename = spell_out_metric_names(filename, callback.CHECKPOINT_EQUALS_CHAR)
        callback.auto_insert_metric_name = False
    return callback


class SafeNameCheckpoint(pl_callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` configured by :func:`safe_checkpoint_names`.

    ``filename="{epoch}-{val/MaxBoxAccV2:.2f}"`` gives ``epoch=3-val_MaxBoxAccV2=59.67.ckpt``; ``monitor`` keeps the
    logged name. Takes ``ModelCheckpoint``'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        safe_checkpoint_names(self)


def __getattr__(name: str) -> Any:
    # The old name, which shadowed Lightning's (configs may still write it); Lightning's class is imported under
    # its module's name above, so that this name reaches here.
    if name == "ModelCheckpoint":
        warnings.warn(
            "wsol.callbacks.ModelCheckpoint is now wsol.training.SafeNameCheckpoint: write that class_path "
            "(or pytorch_lightning.callbacks.ModelCheckpoint, which wsol fit configures the same way)",
            FutureWarning,
            stacklevel=2,
        )
        return SafeNameCheckpoint
    raise AttributeError(f"module 'wsol.training.callbacks' has no attribute {name!r}")
