"""Batch-level mixed-sample data augmentation (MixUp, CutMix, FMix, ResizeMix, HMix, GMix).

Mixers run inside the LightningModule on the batch (not in the per-sample albumentations pipeline):
``mixer(images, targets) -> MixOutput``. Build one by class or by name::

    mixer = CutMix(alpha=1.0, prob=0.5, seed=0)
    mixer = create_mixer("fmix", decay_power=3.0)
"""

from wsol.augment.base import MIXERS, Mixer, MixOutput, Pairing, create_mixer, list_mixers, register_mixer
from wsol.augment.cutmix import CutMix
from wsol.augment.fmix import FMix
from wsol.augment.hmix_gmix import GMix, HMix
from wsol.augment.mixup import MixUp
from wsol.augment.resizemix import ResizeMix

__all__ = [
    "MIXERS",
    "CutMix",
    "FMix",
    "GMix",
    "HMix",
    "MixOutput",
    "MixUp",
    "Mixer",
    "Pairing",
    "ResizeMix",
    "create_mixer",
    "list_mixers",
    "register_mixer",
]
