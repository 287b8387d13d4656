"""Score maps: from raw CAMs to the evaluator's input, and the threshold grid.

docs/protocol.md §1: a CAM is upsampled bicubically in float64 and then normalised per image — min-max by default,
or any rule of :mod:`wsol.metrics.normalization`; a map containing NaN or with ``min == max`` becomes all
zeros. The evaluator itself takes maps in [0, 1] and quantises them to ``uint8(255 * s)`` for the box metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wsol.metrics.normalization import DEFAULT_PERCENTILE, check_normalization, normalize_scoremaps

if TYPE_CHECKING:
    import torch

# The finest threshold grid accepted: 10,000 thresholds, ten times the papers' 0.001.
MIN_CAM_CURVE_INTERVAL = 1e-4

__all__ = [
    "MIN_CAM_CURVE_INTERVAL",
    "cam_thresholds",
    "check_scoremaps",
    "prepare_scoremaps",
    "prepare_scoremaps_numpy",
    "quantize_scoremap",
    "upsample_cam_numpy",
]


def cam_thresholds(cam_curve_interval: float) -> np.ndarray:
    """The reference's CAM threshold grid ``np.arange(0, 1, interval)`` in float64.

    Float64 matters: a float32 grid shifts 4 of the 100 integer thresholds of the 0.01 grid
    (docs/protocol.md §2.4).

    Args:
        cam_curve_interval: Grid step Δ, e.g. 0.001 (papers) or 0.01 (the reference's CLI).

    Returns:
        The thresholds, 1.0 excluded.
    """
    if not 0 < cam_curve_interval < 1:
        raise ValueError(f"cam_curve_interval must lie in (0, 1), got {cam_curve_interval}")
    if cam_curve_interval < MIN_CAM_CURVE_INTERVAL:
        # 1e-9 would allocate tens of GB of curves; the reference's finest grid is 0.001.
        raise ValueError(
            f"cam_curve_interval must be >= {MIN_CAM_CURVE_INTERVAL:g} (the papers use 0.001), "
            f"got {cam_curve_interval:g}"
        )
    return np.arange(0, 1, cam_curve_interval, dtype=np.float64)


def quantize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """``uint8(255 * s)`` with the product in float64, as the reference's box extraction does."""
    return np.multiply(scoremap, 255.0, dtype=np.float64).astype(np.uint8)


def check_scoremaps(scoremaps: np.ndarray, ndim: int = 3, names: list[str] | None = None) -> None:
    """Raise ``ValueError`` unless every map is finite and within [0, 1].

    Args:
        scoremaps: Array of maps, ``(B, H, W)`` when ``ndim`` is 3 or one ``(H, W)`` map when 2.
        ndim: Expected number of dimensions.
        names: Optional per-map names (image ids) used in the error message instead of indices.
    """
    if scoremaps.ndim != ndim:
        raise ValueError(f"score maps must have {ndim} dimensions, got shape {scoremaps.shape}")
    if scoremaps.size == 0:
        return
    # min/max propagate NaN, so one cheap pass covers NaN and the range in the common valid case.
    lo, hi = scoremaps.min(), scoremaps.max()
    if lo >= 0 and hi <= 1:
        return
    maps = scoremaps.reshape(-1, *scoremaps.shape[-2:])
    for i, scoremap in enumerate(maps):
        name = names[i] if names is not None else f"index {i}"
        if np.isnan(scoremap).any():
            raise ValueError(f"score map of {name} contains NaN")
        if scoremap.min() < 0 or scoremap.max() > 1:
            raise ValueError(
                f"score map of {name} has values outside [0, 1] "
                f"(min {float(scoremap.min()):g}, max {float(scoremap.max()):g})"
            )


def upsample_cam_numpy(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One raw CAM ``(h, w)`` at ``size = (H, W)`` the reference's way: float64 cast, ``cv2.resize(INTER_CUBIC)``
    (cv2 takes ``(W, H)``); a map already at ``size`` is only cast."""
    import cv2

    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape == tuple(size):
        return cam
    return cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def prepare_scoremaps_numpy(
    cams: np.ndarray, size: tuple[int, int], normalization: str = "minmax", percentile: float = DEFAULT_PERCENTILE
) -> np.ndarray:
    """CAMs ``(B, h, w)`` → score maps ``(B, H, W)`` float64 via ``cv2.resize(INTER_CUBIC)``.

    This is the reference's own pipeline (float64 cast, bicubic resize, normalisation — min-max by default,
    see :mod:`wsol.metrics.normalization` for the others). ``size`` is ``(H, W)``; it is passed to cv2 as
    ``(W, H)``, which the reference gets wrong for non-square sizes.
    """
    check_normalization(normalization, percentile)
    height, width = size
    cams = np.asarray(cams, dtype=np.float64)
    out = np.empty((cams.shape[0], height, width), dtype=np.float64)
    for i, cam in enumerate(cams):
        out[i] = normalize_scoremaps(upsample_cam_numpy(cam, (height, width)), normalization, percentile)
    return out


def prepare_scoremaps(
    cams: torch.Tensor,
    size: tuple[int, int],
    normalization: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
) -> torch.Tensor:
    """CAMs ``(B, h, w)`` → score maps ``(B, H, W)`` float64 following docs/protocol.md §1, in pure torch.

    Bicubic ``interpolate(align_corners=False)`` in float64 equals cv2 ``INTER_CUBIC`` to ≤ 1e-15
    (docs/protocol.md §8.5); the min-max step uses the reference's order of operations. A map with NaN (or ±inf)
    or with ``min == max`` becomes all zeros. Works on any device; the result stays on the input's device.

    Args:
        cams: Raw class activation maps of any float dtype.
        size: Target ``(H, W)``, usually ``(224, 224)``.
        normalization: a rule of :data:`wsol.metrics.NORMALIZATIONS` (``"minmax"``, the protocol's, by default),
            applied after upsampling.
        percentile: IVR's percentile in [0, 1).
    """
    import torch
    import torch.nn.functional as F

    from wsol.metrics.normalization import normalize_scoremaps_torch

    check_normalization(normalization, percentile)
    if cams.ndim != 3:
        raise ValueError(f"cams must be (B, h, w), got shape {tuple(cams.shape)}")
    maps = cams.detach().to(torch.float64)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=tuple(size), mode="bicubic", align_corners=False)[:, 0]
    return normalize_scoremaps_torch(maps, normalization, percentile)
