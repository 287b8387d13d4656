"""Study rows: their registry, and the typed schema every row's recipe overrides are checked against.

A row (:class:`~wsol.study.grid.MethodSpec`) is checked when it is made: an unknown or misspelt key of a variant's
overrides, or a value of the wrong type, fails there, naming the row, the variant and the key. A row registered
from a plugin (:func:`register_row`) is also checked against the method and mixer it names (every ``model`` key
must be an argument of the method class, every mixer option an argument of the mixer), before any training.

The built-in rows (:data:`~wsol.study.grid.SMALL_DATA_METHODS`) come first, in their order, then the plugins' rows
in registration order; ``wsol study small-data --methods`` and ``--help`` read this registry::

    from wsol.study import MethodSpec, register_row

    register_row(MethodSpec("cam_ls05", "smoothing", {"default": {"model": {"label_smoothing": 0.05}}}, "LS 0.05"))
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from wsol.registry import Registry

if TYPE_CHECKING:
    from wsol.study.grid import MethodSpec

__all__ = [
    "STUDY_ROWS",
    "RecipeOverrides",
    "check_overrides",
    "check_row",
    "check_row_arguments",
    "get_row",
    "register_row",
    "study_rows",
]


class RecipeOverrides(TypedDict, total=False):
    """What a row's variant may override in the base recipe (:data:`wsol.training.recipes.SMALL_DATA`); nothing else.

    Attributes:
        method: registered training method (``wsol.methods.list_methods()``), e.g. ``"MixUpCAM"``.
        model: keyword arguments of the method (and its backbone: ``backbone``, ``backbone_kwargs``).
        mixer: ``{"name": registered mixer, **its options}``, or None for no mixing.
        ema: decay of the weights' exponential moving average, or None.
        epochs: training epochs.
        batch_size: images per batch.
        train_scale: ``[min, max]`` crop scale of the training augmentation.
        precision: Lightning precision, e.g. ``"bf16-mixed"``.
        channels_last: train with channels-last weights.
        train_split: what the row trains on: the regime's images, the tuning split's boxes, or pseudo boxes.
        rounds: rounds of pseudo-box self-training (``train_split="pseudo"``).
        stage1: overrides of the first stage's recipe (``train_split="pseudo"``).
        pseudo_fusion: ``{"cue": name, "step": weight grid step}``: pseudo boxes from the class map fused with a cue.
        supervision: ``"labels"`` (a WSOL row) or ``"boxes"`` (a fully supervised reference row).
    """

    method: str
    model: dict[str, Any]
    mixer: dict[str, Any] | None
    ema: float | None
    epochs: int
    batch_size: int
    train_scale: list[float]
    precision: str
    channels_last: bool
    train_split: Literal["regime", "tune", "pseudo"]
    rounds: int
    stage1: RecipeOverrides
    pseudo_fusion: dict[str, Any]
    supervision: Literal["labels", "boxes"]


_NUMBER = (int, float)
# Runtime form of RecipeOverrides: key -> (accepted types, accepted values or None for any).
_SCHEMA: dict[str, tuple[tuple[type, ...], tuple[Any, ...] | None]] = {
    "method": ((str,), None),
    "model": ((dict,), None),
    "mixer": ((dict, type(None)), None),
    "ema": ((*_NUMBER, type(None)), None),
    "epochs": ((int,), None),
    "batch_size": ((int,), None),
    "train_scale": ((list, tuple), None),
    "precision": ((str,), None),
    "channels_last": ((bool,), None),
    "train_split": ((str,), ("regime", "tune", "pseudo")),
    "rounds": ((int,), None),
    "stage1": ((dict,), None),
    "pseudo_fusion": ((dict,), None),
    "supervision": ((str,), ("labels", "boxes")),
}
assert set(_SCHEMA) == set(RecipeOverrides.__annotations__), "the runtime schema follows RecipeOverrides"
_FUSION_KEYS = ("cue", "step")


def check_overrides(overrides: Mapping[str, Any], where: str) -> None:
    """Check one variant's overrides against :class:`RecipeOverrides` (keys, types, choices; ``stage1`` nested).

    Raises:
        ValueError: naming ``where`` (row and variant) and the key, with the accepted keys for an unknown one.
    """
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{where}: overrides must be a dict, got {type(overrides).__name__}")
    for key, value in overrides.items():
        if key not in _SCHEMA:
            raise ValueError(f"{where}: unknown key {key!r}; a variant overrides {', '.join(_SCHEMA)}")
        types, choices = _SCHEMA[key]
        wrong_type = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        if wrong_type or (choices is not None and value not in choices):
            accepted = " or ".join(repr(c) for c in choices) if choices else "/".join(t.__name__ for t in types)
            raise ValueError(f"{where}: {key!r} must be {accepted}, got {value!r}")
    for key in ("model", "mixer", "pseudo_fusion"):
        if isinstance(overrides.get(key), dict) and not all(isinstance(k, str) for k in overrides[key]):
            raise ValueError(f"{where}: the keys of {key!r} must be strings")
    mixer = overrides.get("mixer")
    if isinstance(mixer, dict) and not isinstance(mixer.get("name"), str):
        raise ValueError(f"{where}: 'mixer' needs a 'name' (a registered mixer), got {mixer!r}")
    fusion = overrides.get("pseudo_fusion")
    if isinstance(fusion, dict):
        unknown = [k for k in fusion if k not in _FUSION_KEYS]
        if unknown or "cue" not in fusion:
            raise ValueError(f"{where}: 'pseudo_fusion' takes 'cue' (required) and 'step', got {sorted(fusion)}")
    if "stage1" in overrides:
        check_overrides(overrides["stage1"], f"{where}, stage1")


def check_row(row: MethodSpec) -> None:
    """Check a row's fields and every variant's overrides (cheap: imports nothing).

    Raises:
        ValueError: naming the row (and variant and key).
    """
    name = row.name
    if not isinstance(name, str) or not name or any(c in name for c in "/\\:+= ,"):
        raise ValueError(f"study row name {name!r} must be a non-empty folder name without / \\ : + = , or spaces")
    if row.group is not None and not isinstance(row.group, str):
        raise ValueError(f"study row {name!r}: group must be a string or None, got {row.group!r}")
    if not isinstance(row.variants, Mapping) or not row.variants:
        raise ValueError(f"study row {name!r}: variants must be a non-empty dict of variant name -> overrides")
    for variant, overrides in row.variants.items():
        if not isinstance(variant, str) or not variant or any(c in variant for c in "/\\:+= ,"):
            raise ValueError(f"study row {name!r}: variant name {variant!r} must be a folder name")
        check_overrides(overrides, f"study row {name!r}, variant {variant!r}")


def _parameters(cls: type, stop: type | None = None) -> set[str] | None:
    """Named keyword arguments of ``cls`` and the classes it forwards ``**kwargs`` to (None: takes any keyword)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params) or klass is stop:
            return names
    return None


def check_row_arguments(row: MethodSpec) -> None:
    """Check a row against what it names: its method is registered and takes every ``model`` key; its mixer is
    registered and takes every option (imports the training methods).

    Raises:
        ValueError: naming the row, the variant and the culprit.
    """
    from wsol.augment import MIXERS
    from wsol.methods import METHODS, WSOLModule
    from wsol.training.recipes import SMALL_DATA

    for variant, overrides in row.variants.items():
        for part, where in ((overrides, ""), (overrides.get("stage1") or {}, ", stage1")):
            at = f"study row {row.name!r}, variant {variant!r}{where}"
            method = part.get("method", overrides.get("method", SMALL_DATA["method"]))
            if method not in METHODS:
                raise ValueError(f"{at}: unknown method {method!r}; registered: {', '.join(METHODS.names())}")
            accepted = _parameters(METHODS.get(method), stop=WSOLModule)
            for key in part.get("model") or {}:
                if accepted is not None and key not in accepted:
                    known = ", ".join(sorted(accepted))
                    raise ValueError(f"{at}: {key!r} is not an argument of {method}; it takes {known}")
            mixer = part.get("mixer")
            if mixer:
                if mixer["name"] not in MIXERS:
                    raise ValueError(f"{at}: unknown mixer {mixer['name']!r}; registered: {', '.join(MIXERS.names())}")
                options = _parameters(MIXERS.get(mixer["name"]))
                for key in mixer:
                    if key != "name" and options is not None and key not in options:
                        raise ValueError(f"{at}: {key!r} is not an option of mixer {mixer['name']!r}")


def _load_builtin_rows() -> None:
    from wsol.study.grid import SMALL_DATA_METHODS

    for row in SMALL_DATA_METHODS:  # checked when made; their arguments by the test suite
        STUDY_ROWS.register(row.name)(row)


STUDY_ROWS: Registry[Any] = Registry("study row", loader=_load_builtin_rows)


def register_row(row: MethodSpec) -> MethodSpec:
    """Register a study row after the built-in ones, checked against its method and mixer; returns the row.

    Raises:
        ValueError: a row of that name exists, or the row fails :func:`check_row` / :func:`check_row_arguments`.
    """
    from wsol.study.grid import MethodSpec

    if not isinstance(row, MethodSpec):
        raise ValueError(f"register_row takes a wsol.study.MethodSpec, got {type(row).__name__}")
    STUDY_ROWS._load_builtins()  # the built-in rows keep their places at the top
    if row.name in STUDY_ROWS:
        raise ValueError(f"study row {row.name!r} is already registered")
    check_row_arguments(row)
    return STUDY_ROWS.register(row.name)(row)


def study_rows() -> tuple[MethodSpec, ...]:
    """Every registered row: the built-in ones in their order, then the plugins' in registration order."""
    return tuple(row for _, row in STUDY_ROWS.entries())


def get_row(name: str) -> MethodSpec:
    """The row registered as ``name``.

    Raises:
        KeyError: for an unknown name, listing the registered rows.
    """
    return STUDY_ROWS.get(name)
