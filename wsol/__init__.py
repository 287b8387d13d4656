"""wsol: weakly supervised object localization and semantic segmentation.

The public names below are loaded on first use (PEP 562), so ``import wsol`` — and the command line's start,
and the torch-free evaluator — import no torch. Importing ``wsol`` installs the quiet-output filters of
:mod:`wsol.training.quiet` (logging and warnings filters only; nothing heavy is imported).

Modules that moved keep their old import path for a while: ``import wsol.lightning_cli`` (and the others in
``_MOVED``) gives the module at its new place with a ``DeprecationWarning`` naming it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

from wsol.training.quiet import quiet_lightning

__all__ = ["Backbone", "create_backbone", "list_backbones", "load_model", "register_backbone"]
__version__ = "0.1.0"

# old module path -> new one (the training room, and the reference-layout writer beside its reader)
_MOVED = {
    "wsol.callbacks": "wsol.training.callbacks",
    "wsol.lightning_cli": "wsol.training.lightning_cli",
    "wsol.prediction": "wsol.training.prediction",
    "wsol.quiet": "wsol.training.quiet",
    "wsol.recipes": "wsol.training.recipes",
    "wsol.resumable_csv": "wsol.training.resumable_csv",
    "wsol.reference_output": "wsol.evaluation.reference_output",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path of :data:`_MOVED` to the module at its new path (the same module object)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = _MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}: import {new} instead", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed at its new path."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
quiet_lightning()


def __getattr__(name: str) -> Any:
    if name == "load_model":
        return importlib.import_module("wsol.methods.checkpoint").load_model
    if name in __all__:
        return getattr(importlib.import_module("wsol.models"), name)
    raise AttributeError(f"module 'wsol' has no attribute {name!r}")
