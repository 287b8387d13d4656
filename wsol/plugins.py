"""User code that registers backbones, training methods, CAM methods, mixers, readers or study rows.

A plugin is a Python module that registers things when it is imported (``@wsol.register_backbone()``,
``@wsol.methods.register_method``, ``wsol.study.register_row(...)``, ...). It is loaded from three sources:

* ``--import MODULE`` on any ``wsol`` command (repeatable), read before the command's own arguments;
* the environment variable ``WSOL_PLUGINS=mod_a,mod_b``;
* the entry-point group ``wsol.plugins`` of installed packages (``[project.entry-points."wsol.plugins"]``,
  ``name = "package.module"``), so an installed package registers itself with no flag. An entry point naming an
  object (``"package.module:setup"``) has that object called with no arguments once its module is imported.

The environment variable and the entry points are loaded on the first use of any registry as well, so Python code
sees the same names as the command line. Each module is imported once per process; one that fails to import
raises :class:`PluginError`, whose one-line message names the module and its error.

Registries remember which plugin registered each name (:func:`current_plugin`), so a checkpoint can name the
plugin it needs; loading a checkpoint never imports a module the file names (docs/extending.md).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "PluginError",
    "current_plugin",
    "load_plugins",
    "loaded_plugins",
    "plugin_hint",
    "split_import_flags",
]

ENV_VAR = "WSOL_PLUGINS"
ENTRY_POINT_GROUP = "wsol.plugins"

_loaded: list[str] = []  # modules imported as plugins, in order
_loading: list[str] = []  # the plugin being imported now (a stack: a plugin may load another)
_discovered = False  # the environment variable and the entry points have been read


class PluginError(ImportError):
    """A plugin module that could not be imported or set up (the message names it and its error)."""


def current_plugin() -> str | None:
    """The plugin module being imported right now, or None (registries record it as the owner of a name)."""
    return _loading[-1] if _loading else None


def loaded_plugins() -> tuple[str, ...]:
    """Modules loaded as plugins in this process, in load order."""
    return tuple(_loaded)


def plugin_hint(module: str) -> str:
    """How to load ``module``: the flag, with the environment variable as the Python route."""
    return f"pass --import {module} (or set {ENV_VAR}={module})"


def _env_modules() -> list[str]:
    return [name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()]


def _load_module(name: str, setup: str | None = None, source: str = "--import") -> None:
    key = f"{name}:{setup}" if setup else name
    if key in _loaded or key in _loading:
        return
    if not name.replace(".", "").replace("_", "").isalnum() or name.startswith(".") or ".." in name:
        raise PluginError(f"plugin {name!r} (from {source}) is not a module name")
    _loading.append(key)
    try:
        module = importlib.import_module(name)
        if setup:
            target = module
            for part in setup.split("."):
                target = getattr(target, part)
            target()
    except PluginError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of user code is reported as one line naming it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
        raise PluginError(f"plugin {key!r} (from {source}) failed to import: {detail}") from err
    finally:
        _loading.pop()
    _loaded.append(key)


def _entry_point_targets() -> list[tuple[str, str | None]]:
    from importlib.metadata import entry_points

    targets = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module, _, attr = ep.value.partition(":")
        targets.append((module.strip(), attr.strip() or None))
    return targets


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import ``modules`` (the ``--import`` flags), then, once per process, the modules named by ``WSOL_PLUGINS``
    and the ``wsol.plugins`` entry points. A module already loaded is skipped.

    Raises:
        PluginError: a module failed to import (the one-line message names it, its source and its error).
    """
    global _discovered
    for name in modules:
        _load_module(name.strip(), source="--import")
    if _discovered:
        return
    _discovered = True
    try:
        for name in _env_modules():
            _load_module(name, source=ENV_VAR)
        for name, setup in _entry_point_targets():
            _load_module(name, setup, source=f"entry point group {ENTRY_POINT_GROUP}")
    except BaseException:
        _discovered = False  # retried, and reported again, on the next use
        raise


def split_import_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(modules, remaining argv)``: every ``--import MODULE`` / ``--import=MODULE`` taken out of ``argv``.

    Raises:
        ValueError: ``--import`` without a module name.
    """
    modules: list[str] = []
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--import":
            value = next(items, None)
            if value is None or value.startswith("-"):
                raise ValueError("--import needs a module name, e.g. --import mypackage.plugin")
            modules.append(value)
        elif item.startswith("--import="):
            value = item.partition("=")[2]
            if not value:
                raise ValueError("--import needs a module name, e.g. --import=mypackage.plugin")
            modules.append(value)
        else:
            rest.append(item)
    return modules, rest
