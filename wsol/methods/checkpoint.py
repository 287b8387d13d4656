"""Load a trained method from its Lightning checkpoint, whichever method class wrote it."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from wsol.methods.base import WSOLModule

# Written by WSOLModule.on_save_checkpoint: the dotted path of the class that trained the weights.
METHOD_KEY = "wsol_method"


def checkpoint_method(path: str | Path) -> str:
    """Dotted class path of the method stored in a checkpoint, e.g. ``"wsol.methods.seam.SEAM"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint was not written by a :class:`WSOLModule`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if METHOD_KEY not in ckpt:
        raise ValueError(f"{path} was not written by a wsol method (no '{METHOD_KEY}' entry)")
    return str(ckpt[METHOD_KEY])


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> WSOLModule:
    """Rebuild the method that wrote ``path`` (its class is recorded in the checkpoint), in eval mode.

    Backbone weights come from the checkpoint; pretrained weights are never fetched again.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the checkpoint holds no wsol method or names a class that is not one.
    """
    dotted = checkpoint_method(path)
    module_name, _, class_name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, WSOLModule)):
        raise ValueError(f"{path} names {dotted!r}, which is not a wsol method class")
    model = cls.load_from_checkpoint(path, map_location=map_location, pretrained=False)
    return model.eval()
