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
package stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


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

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            try:
                loader()
            except BaseException:
                self._loader = loader  # a failed import is retried (and fails loudly) on the next lookup
                raise

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering its target under ``name`` (default: the target's ``__name__``).

        Raises:
            ValueError: the name is already registered.
        """

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"a {self.kind} needs a name to be registered")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered ({self._entries[key]!r})")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``.

        Raises:
            KeyError: for an unknown name, listing the registered ones.
        """
        self._load()
        if name not in self._entries:
            hint = f", {self.hint}" if self.hint else ""
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}{hint}")
        return self._entries[name]

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return what was registered (e.g. to undo a temporary plug-in).

        Raises:
            KeyError: for an unknown name, listing the registered ones.
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
