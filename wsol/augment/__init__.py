"""Batch-level mixed-sample data augmentation (MixUp, CutMix, FMix, ResizeMix, HMix, GMix)."""

from wsol.augment.base import Mixer, MixOutput, create_mixer, list_mixers, register_mixer

__all__ = ["MixOutput", "Mixer", "create_mixer", "list_mixers", "register_mixer"]
