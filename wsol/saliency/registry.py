"""The registry of label-free cues: name -> function ``(H, W, 3) uint8 RGB -> (H, W) float map``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wsol.registry import Registry

__all__ = ["CUES", "Cue", "cue_maps", "get_cue", "list_cues", "register_cue"]

Cue = Callable[[np.ndarray], np.ndarray]


def _load_builtin_cues() -> None:
    import wsol.saliency.backgroundness  # noqa: F401
    import wsol.saliency.mbd  # noqa: F401
    import wsol.saliency.spectral  # noqa: F401


CUES: Registry[Cue] = Registry("saliency cue", loader=_load_builtin_cues)


def register_cue(name: str | None = None) -> Callable[[Cue], Cue]:
    """Decorator registering a cue function under ``name`` (default: the function's name)."""
    return CUES.register(name)


def get_cue(name: str) -> Cue:
    """The cue registered as ``name`` (KeyError listing the registered ones otherwise)."""
    return CUES.get(name)


def list_cues() -> list[str]:
    """Registered cue names, sorted."""
    return CUES.names()


def cue_maps(name: str, images: Sequence[np.ndarray]) -> np.ndarray:
    """The cue ``name`` of every image, stacked as ``(N, H, W)`` float32 (the images must share one size).

    Raises:
        ValueError: An image is not ``(H, W, 3)`` uint8, or the images differ in size.
    """
    cue = get_cue(name)
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"cue_maps: image {i} must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        if out and image.shape[:2] != out[0].shape:
            raise ValueError(f"cue_maps: image {i} is {image.shape[:2]}, the first is {out[0].shape}")
        out.append(np.asarray(cue(image), dtype=np.float32))
    if not out:
        return np.zeros((0, 0, 0), np.float32)
    return np.stack(out)
