"""Training methods: each is a LightningModule over :class:`~wsol.methods.base.WSOLModule`."""

from wsol.methods.base import WSOLModule
from wsol.methods.cam import CAM

__all__ = ["CAM", "WSOLModule"]
