"""Fit a CAM with AutoMix (``prob`` 0.5, so some batches stay unmixed) for a few steps on N ranks (Lightning DDP,
gloo on CPU, ``find_unused_parameters=False``); each rank writes a checksum of its weights to OUT/rank<r>.json.
Run as a script: Lightning's DDP launcher starts the other ranks by running this file again. Used by
tests/test_dynamic_mixers.py.

    python tests/ddp_train_mixer.py DEVICES OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from pytorch_lightning.strategies import DDPStrategy
from quiet import quiet_trainer

from wsol.augment import AutoMix
from wsol.data import WSOLDataModule
from wsol.methods import CAM

DATA = {"train_per_class": 4, "val_per_class": 1, "image_size": 32, "num_classes": 4, "clutter": 2}


def main(devices: int, out: Path) -> None:
    torch.manual_seed(0)  # the same weights on every rank
    mixer = AutoMix(prob=0.5, seed=0, momentum=0.9, feature_layer=None)
    model = CAM(backbone="resnet10", backbone_kwargs={"width": 8, "stem_stride": 2}, num_classes=4, mixer=mixer)
    dm = WSOLDataModule("synthetic", image_size=32, batch_size=4, train_options=DATA, val_options=DATA)
    trainer = quiet_trainer(
        devices=devices, strategy=DDPStrategy(find_unused_parameters=False), max_steps=4, limit_val_batches=0
    )
    trainer.fit(model, datamodule=dm)
    block = [p.detach().double().sum().item() for p in model.mix_modules.mix_block.parameters()]
    net = [p.detach().double().sum().item() for p in model.net.parameters()]
    record = {"world_size": trainer.world_size, "steps": trainer.global_step, "block": block, "net": net}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
