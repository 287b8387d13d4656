"""Batch-level mixed-sample data augmentation (MixUp, CutMix, FMix, ResizeMix, HMix, GMix, PuzzleMix, AutoMix).

Mixers run inside the LightningModule on the batch (not in the per-sample albumentations pipeline):
``mixer(images, targets) -> MixOutput``; a training method calls ``mixer.mix_batch(method, images, targets)``,
which the dynamic mixers (PuzzleMix: saliency from the network; AutoMix: a learned Mix Block) need. Build one by
class or by name::

    mixer = CutMix(alpha=1.0, prob=0.5, seed=0)
    mixer = create_mixer("fmix", decay_power=3.0)
"""

from wsol.augment.automix import AutoMix
from wsol.augment.base import (
    MIXERS,
    MixContext,
    Mixer,
    MixOutput,
    Pairing,
    create_mixer,
    list_mixers,
    register_mixer,
)
from wsol.augment.cutmix import CutMix
from wsol.augment.fmix import FMix
from wsol.augment.hmix_gmix import GMix, HMix
from wsol.augment.mixup import MixUp
from wsol.augment.puzzlemix import PuzzleMix
from wsol.augment.resizemix import ResizeMix

__all__ = [
    "MIXERS",
    "AutoMix",
    "CutMix",
    "FMix",
    "GMix",
    "HMix",
    "MixContext",
    "MixOutput",
    "MixUp",
    "Mixer",
    "Pairing",
    "PuzzleMix",
    "ResizeMix",
    "create_mixer",
    "list_mixers",
    "register_mixer",
]
