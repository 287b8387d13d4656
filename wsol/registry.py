"""The one registry idiom of ``wsol``: backbones, training methods, CAM methods, mixers and dataset readers.

Each kind of plug-in has one :class:`Registry`; a plug-in registers itself with the registry's decorator,
and every lookup goes through :meth:`Registry.get`, whose error lists what is registered::

    MIXERS: Registry[type[Mixer]] = Registry("mixer")

    @MIXERS.register("mixup")
    class MixUp(Mixer): ...

    MIXERS.get("mixup")   # the class
    MIXERS.names()        # sorted names

The per-kind helpers (``register_mixer``, ``create_mixer``, ``list_mixers``, ...) are thin wrappers over
their registry, so every kind lists sorted names, refuses duplicates and names the registered ones on a miss.
A registry may take a ``loader`` that imports the built-in plug-ins on first use, so that importing the
package stays light. The first use also loads the user's plugins (:func:`wsol.plugins.load_plugins`: the
``WSOL_PLUGINS`` modules and the ``wsol.plugins`` entry points), and each name remembers the plugin module that
registered it (:meth:`Registry.origin`), so a checkpoint can say which plugin it needs. A registry may also resolve
names by prefix (``timm:<model>``, :meth:`Registry.register_prefix`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


def _builtin(module: str | None) -> bool:
    """Whether a registration comes from the package itself (or from nowhere known)."""
    return not module or module == "wsol" or module.startswith("wsol.")


class Registry(Generic[T]):
    """Named plug-ins of one kind.

    Args:
        kind: what is registered, used in messages (e.g. ``"mixer"``, ``"dataset reader"``).
        loader: called once before the first lookup or listing, to import built-in plug-ins lazily.
        hint: appended to the unknown-name error (e.g. other accepted spellings).
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._loader = loader
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str | None] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}
        self._plugins_loaded = False

    def _load_builtins(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            try:
                loader()
            except BaseException:
                self._loader = loader  # a failed import is retried (and fails loudly) on the next lookup
                raise

    def _load(self) -> None:
        self._load_builtins()
        if not self._plugins_loaded:
            from wsol.plugins import load_plugins

            self._plugins_loaded = True
            try:
                load_plugins()
            except BaseException:
                self._plugins_loaded = False
                raise

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering its target under ``name`` (default: the target's ``__name__``).

        Raises:
            ValueError: the name is already registered.
        """

        def decorator(obj: T) -> T:
            from wsol.plugins import current_plugin

            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"a {self.kind} needs a name to be registered")
            owner = current_plugin() or getattr(obj, "__module__", None)
            if not _builtin(owner):  # the built-ins first, so a plug-in cannot take a built-in's name
                self._load_builtins()
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered ({self._entries[key]!r})")
            if any(key.startswith(prefix) for prefix in self._prefixes):
                raise ValueError(f"{self.kind} {key!r} starts with a resolved prefix ({', '.join(self._prefixes)})")
            self._entries[key] = obj
            self._origins[key] = owner
            return obj

        return decorator

    def register_prefix(self, prefix: str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
        """Decorator registering a resolver of every name ``<prefix><rest>``: ``get`` returns ``resolver(rest)``.

        Raises:
            ValueError: the prefix is already registered or does not end with ``:``.
        """

        def decorator(resolver: Callable[[str], T]) -> Callable[[str], T]:
            if not prefix.endswith(":") or prefix in self._prefixes:
                raise ValueError(f"{self.kind} prefix {prefix!r} must end with ':' and be registered once")
            self._prefixes[prefix] = resolver
            return resolver

        return decorator

    def prefixes(self) -> list[str]:
        """Registered name prefixes (e.g. ``["timm:"]``), sorted."""
        return sorted(self._prefixes)

    def origin(self, name: str) -> str | None:
        """The module that registered ``name``: the plugin being loaded then, else the entry's own module; None for
        the package's built-ins, prefix-resolved names and entries of ``__main__`` (which no import can restore)."""
        self._load()
        module = self._origins.get(name)
        return None if _builtin(module) or module == "__main__" else module

    def entries(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order (the built-ins first)."""
        self._load()
        return list(self._entries.items())

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``.

        Raises:
            KeyError: for an unknown name, listing the registered ones.
        """
        self._load()
        if name in self._entries:
            return self._entries[name]
        for prefix, resolver in self._prefixes.items():
            if name.startswith(prefix):
                return resolver(name[len(prefix) :])
        extra = ([f"or {', '.join(repr(p + '<name>') for p in sorted(self._prefixes))}"] if self._prefixes else []) + (
            [self.hint] if self.hint else []
        )
        hint = "".join(f", {part}" for part in extra)
        raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}{hint}")

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return what was registered (e.g. to undo a temporary plug-in).

        Raises:
            KeyError: for an unknown name, listing the registered ones.
        """
        self._load()
        if name not in self._entries:
            self.get(name)  # raises, listing the registered names
        self._origins.pop(name, None)
        return self._entries.pop(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        """Registered by name (a prefix-resolved name is not: :meth:`get` resolves it)."""
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
