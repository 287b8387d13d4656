"""The ResNet-10 small-data recipes, written once: the study, ``wsol quickstart`` and the experiment YAML read them.

* :data:`SMALL_DATA`: the small-data study's plain CAM (``wsol study small-data``, every row overrides it):
  ResNet-10 from scratch at width 32, 3x3/1 stem + max-pool (stem_stride 2), 4x4 maps at 64 px, SGD 0.1 at
  batch 64 (0.4 per 256 images, linear scaling), cosine with one warm-up epoch, weight decay 5e-4, 12 epochs,
  crops of 50-100 % of the image. Trained in bfloat16 autocast with channels-last weights (2x faster per epoch
  on a CPU with AVX-512 BF16, and suited to GPUs; maps are always scored in float32).
* :data:`QUICKSTART`: the demo's CAM, the small-data recipe with the overrides below (each with its reason);
  ``experiments/cam_resnet10_tinyimagenet10.yaml`` holds the same model and schedule (a test checks it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["QUICKSTART", "SMALL_DATA", "merge"]


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (dicts merge key by key, other values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


SMALL_DATA: dict[str, Any] = {
    "method": "CAM",
    "model": {
        "backbone": "resnet10",
        "backbone_kwargs": {"stem_stride": 2, "last_stride": 2, "width": 32},
        "optimizer": "sgd",
        "lr": 0.4,
        "weight_decay": 5e-4,
        "label_smoothing": 0.0,
        "lr_schedule": "cosine",
        "warmup_epochs": 1.0,
    },
    "mixer": None,
    "ema": None,
    "epochs": 12,
    "batch_size": 64,
    "train_scale": [0.5, 1.0],
    "precision": "bf16-mixed",
    "channels_last": True,
}

QUICKSTART: dict[str, Any] = merge(
    SMALL_DATA,
    {
        "model": {
            # 8x8 maps at 64 px: the demo's pictures show where the object is, not 4 coarse cells.
            "backbone_kwargs": {"last_stride": 1},
            # A light label smoothing: one fixed recipe with no tuning split, where the study tunes it.
            "label_smoothing": 0.1,
        },
        # Ten epochs fit the demo's time budget on 2 CPU cores; the study's 12 are for its fair comparison.
        "epochs": 10,
        # float32 everywhere: the demo must give the same numbers on any CPU (bfloat16 speed varies by CPU).
        "precision": "32-true",
        "channels_last": False,
    },
)
