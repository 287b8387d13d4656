"""Validate one fixed model on 25 generated images with N ranks (Lightning DDP, gloo on CPU); each rank writes its
logged metrics to OUT/rank<r>.json. Run as a script: Lightning's DDP launcher starts the other ranks by running
this file again. Used by tests/test_ddp.py.

    python tests/ddp_validate.py DEVICES OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from quiet import quiet_trainer

from wsol.data import WSOLDataModule
from wsol.methods import CAM

# 25 images: not a multiple of 2 or 3, so a padding sampler would score some image twice.
DATA = {"train_per_class": 2, "val_per_class": 5, "image_size": 32, "num_classes": 5, "clutter": 2}


def main(devices: int, out: Path) -> None:
    torch.manual_seed(0)  # the same weights on every rank
    model = CAM(backbone="resnet10", backbone_kwargs={"width": 8, "stem_stride": 2}, num_classes=5,
                cam_curve_interval=0.01)  # fmt: skip
    dm = WSOLDataModule("synthetic", image_size=32, batch_size=4, train_options=DATA, val_options=DATA)
    trainer = quiet_trainer(devices=devices, strategy="ddp" if devices > 1 else "auto")
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    record = {k: float(v) for k, v in metrics.items()}
    record["world_size"] = trainer.world_size
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
