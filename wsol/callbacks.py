"""Lightning callbacks of ``wsol``.

:class:`ModelCheckpoint` is Lightning's, with metric names made safe in file names: wsol logs ``val/MaxBoxAccV2``,
and ``filename="{epoch}-{val/MaxBoxAccV2:.2f}"`` would otherwise write into a ``val`` subfolder. ``wsol fit``
gives every plain ``ModelCheckpoint`` of a config this behaviour.
"""

from __future__ import annotations

import re

from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from torch import Tensor

__all__ = ["ModelCheckpoint", "safe_metric_name"]


def safe_metric_name(name: str) -> str:
    """``val/MaxBoxAccV2`` -> ``val_MaxBoxAccV2``: a metric name usable inside a file name."""
    return name.replace("/", "_")


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``; a ``/`` in a metric name of ``filename`` becomes ``_`` in the file name.

    ``filename="{epoch}-{val/MaxBoxAccV2:.2f}"`` gives ``epoch=3-val_MaxBoxAccV2=59.67.ckpt``; ``monitor`` keeps
    the logged name.
    """

    def _format_checkpoint_name(
        self,
        filename: str | None,
        metrics: dict[str, Tensor],
        prefix: str | None = None,
        auto_insert_metric_name: bool = True,
    ) -> str:
        if filename:
            filename = re.sub(r"\{([^}:]*)", lambda m: "{" + safe_metric_name(m.group(1)), filename)
        metrics = {**metrics, **{safe_metric_name(k): v for k, v in metrics.items() if "/" in k}}
        return super()._format_checkpoint_name(filename, metrics, prefix, auto_insert_metric_name)
