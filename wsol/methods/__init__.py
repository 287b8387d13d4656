"""Training methods: each is a LightningModule over :class:`~wsol.methods.base.WSOLModule`."""

from wsol.methods.acol import ACoL
from wsol.methods.adl import ADL
from wsol.methods.bas import BAS
from wsol.methods.base import WSOLModule
from wsol.methods.bgc import BGC
from wsol.methods.cam import CAM
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint
from wsol.methods.fsl import FSL
from wsol.methods.has import HaS
from wsol.methods.mixup_cam import MixUpCAM
from wsol.methods.seam import SEAM
from wsol.methods.spg import SPG

__all__ = [
    "ACoL",
    "ADL",
    "BAS",
    "BGC",
    "CAM",
    "FSL",
    "SEAM",
    "SPG",
    "HaS",
    "MixUpCAM",
    "WSOLModule",
    "checkpoint_method",
    "load_checkpoint",
]
