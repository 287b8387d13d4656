"""Training methods: each is a LightningModule over :class:`~wsol.methods.base.WSOLModule`, registered under
its class name (:func:`list_methods`); :func:`load_model` rebuilds any of them from a checkpoint."""

from wsol.methods.acol import ACoL
from wsol.methods.adl import ADL
from wsol.methods.bas import BAS
from wsol.methods.base import WSOLModule
from wsol.methods.bgc import BGC
from wsol.methods.c2am import C2AM
from wsol.methods.cam import CAM
from wsol.methods.checkpoint import checkpoint_method, load_checkpoint, load_model
from wsol.methods.fsl import FSL
from wsol.methods.has import HaS
from wsol.methods.mixup_cam import MixUpCAM
from wsol.methods.registry import METHODS, get_method, list_methods, register_method
from wsol.methods.seam import SEAM
from wsol.methods.spg import SPG

__all__ = [
    "METHODS",
    "ACoL",
    "ADL",
    "BAS",
    "BGC",
    "C2AM",
    "CAM",
    "FSL",
    "SEAM",
    "SPG",
    "HaS",
    "MixUpCAM",
    "WSOLModule",
    "checkpoint_method",
    "get_method",
    "list_methods",
    "load_checkpoint",
    "load_model",
    "register_method",
]
