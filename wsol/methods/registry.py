"""The registry of training methods: every :class:`~wsol.methods.base.WSOLModule` class a checkpoint may name.

The built-in methods register under their class names when :mod:`wsol.methods` is imported; a method defined
elsewhere registers with ``@register_method`` so that :func:`wsol.load_model` can rebuild its checkpoints.
"""

from __future__ import annotations

import importlib
from typing import Any

from wsol.registry import Registry

__all__ = ["METHODS", "get_method", "list_methods", "register_method"]


def _load_builtin_methods() -> None:
    importlib.import_module("wsol.methods")


METHODS: Registry[Any] = Registry("training method", loader=_load_builtin_methods)


def register_method(cls: type) -> type:
    """Class decorator registering a training method under its class name; a duplicate name raises ``ValueError``."""
    return METHODS.register(cls.__name__)(cls)


def get_method(name: str) -> Any:
    """The training method class registered as ``name`` (e.g. ``"SEAM"``).

    Raises:
        KeyError: for an unknown name, listing the registered ones.
    """
    return METHODS.get(name)


def list_methods() -> list[str]:
    """Registered training method names, sorted."""
    return METHODS.names()
