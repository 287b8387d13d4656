"""Training methods: each is a LightningModule over :class:`~wsol.methods.base.WSOLModule`."""

from wsol.methods.base import WSOLModule
from wsol.methods.cam import CAM
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.methods.mixup_cam import MixUpCAM
from wsol.methods.seam import SEAM

__all__ = ["CAM", "MixUpCAM", "SEAM", "WSOLModule", "checkpoint_method", "load_checkpoint"]
