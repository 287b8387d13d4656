"""wsol: weakly supervised object localization and semantic segmentation.

The public names below are loaded on first use (PEP 562), so ``import wsol`` — and the command line's start,
and the torch-free evaluator — import no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Backbone", "create_backbone", "list_backbones", "load_model", "register_backbone"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_model":
        return importlib.import_module("wsol.methods.checkpoint").load_model
    if name in __all__:
        return getattr(importlib.import_module("wsol.models"), name)
    raise AttributeError(f"module 'wsol' has no attribute {name!r}")
