"""Score-map normalisations: how a raw CAM becomes a [0, 1] score map.

Kim et al., "Normalization Matters in Weakly Supervised Object Localization" (ICCV 2021, arXiv 2107.13221)
show that this step alone moves MaxBoxAccV2 by points and can reorder methods. Each rule acts on one raw map
``m`` (any sign) after it has been upsampled to the score-map size, in float64. ``s`` is ``m`` flattened and
sorted ascending, ``n`` its size, and ``s[int(n * q)]`` its value at quantile ``q`` — this index rule exactly,
no interpolation, with ``n * q`` computed in Python floats:

==========  ================================================================================================
``minmax``  ``(m - min) / (max - min)`` — the reference protocol's default (Choe et al., CVPR 2020)
``max``     ``relu(m) / max(relu(m))``
``pas``     ``m' = m - min``; ``m' / s'[int(0.9 n)]`` clipped at 1 (s' sorts ``m'``)
``ivr``     ``relu(m - s[int(p n)]) / max(...)`` with percentile ``p`` (0.6 by default; tune it)
==========  ================================================================================================

The order of operations is the published code's (subtract, then divide), so the results are bit-identical to
it in float64. A map holding NaN or ±inf, or a constant map, becomes all zeros (as the protocol's min-max
does); so does a map whose rule would divide by zero (``max`` of a map with no positive value, ``ivr`` when
the percentile value is the maximum). Under ``pas`` a zero divisor (90 % of the map at its minimum) gives the
rule's limit: 1 above the minimum, 0 at it. The k-th value is found by selection (a compiled histogram
selection in numpy, ``torch.kthvalue`` in torch), which returns exactly ``sorted[k]`` in linear time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wsol.metrics._select import ivr_normalize, pas_normalize

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_PERCENTILE",
    "NORMALIZATIONS",
    "PAS_QUANTILE",
    "check_normalization",
    "normalize_scoremaps",
    "normalize_scoremaps_torch",
    "quantile_index",
]

NORMALIZATIONS: tuple[str, ...] = ("minmax", "max", "pas", "ivr")
DEFAULT_PERCENTILE = 0.6
PAS_QUANTILE = 0.9


def check_normalization(normalization: str, percentile: float = DEFAULT_PERCENTILE) -> None:
    """Raise ``ValueError`` naming the argument unless ``normalization`` and ``percentile`` are valid."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.floating)):
        raise ValueError(f"percentile must be a number in [0, 1), got {percentile!r}")
    if not 0.0 <= float(percentile) < 1.0:
        raise ValueError(f"percentile must lie in [0, 1), got {percentile}")


def quantile_index(size: int, quantile: float) -> int:
    """``int(size * quantile)``: the index of the sorted map that the published rule reads."""
    return int(size * float(quantile))


def _normalize_one(m: np.ndarray, normalization: str, percentile: float) -> np.ndarray:
    # m is a float64 copy owned by this function; every step mirrors the published order of operations.
    if normalization == "pas":  # compiled kernels check NaN/inf and constant maps in their own first pass
        return pas_normalize(m, quantile_index(m.size, PAS_QUANTILE))
    if normalization == "ivr":
        return ivr_normalize(m, quantile_index(m.size, percentile))
    if not np.isfinite(m).all() or m.min() == m.max():
        return np.zeros_like(m)
    if normalization == "minmax":
        m -= m.min()
        m /= m.max()
        return m
    if normalization == "max":
        m = np.maximum(0.0, m)
        peak = m.max()
        return m / peak if peak > 0 else np.zeros_like(m)
    raise ValueError(f"unknown normalization {normalization!r}")  # unreachable after check_normalization


def normalize_scoremaps(
    maps: np.ndarray, normalization: str = "minmax", percentile: float = DEFAULT_PERCENTILE
) -> np.ndarray:
    """Normalise raw maps ``(B, H, W)`` (or one ``(H, W)`` map) to float64 score maps in [0, 1].

    Args:
        maps: Raw maps of any sign and float dtype, already at the score-map size.
        normalization: One of :data:`NORMALIZATIONS`.
        percentile: IVR's percentile ``p`` in [0, 1) (ignored by the other rules).
    """
    check_normalization(normalization, percentile)
    maps = np.asarray(maps)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (H, W) or (B, H, W), got shape {maps.shape}")
    batch = maps.reshape(-1, *maps.shape[-2:])
    out = np.empty(batch.shape, dtype=np.float64)
    for i, m in enumerate(batch):
        out[i] = _normalize_one(np.array(m, dtype=np.float64), normalization, percentile)
    return out.reshape(maps.shape)


def normalize_scoremaps_torch(
    maps: torch.Tensor, normalization: str = "minmax", percentile: float = DEFAULT_PERCENTILE
) -> torch.Tensor:
    """:func:`normalize_scoremaps` for a batch ``(B, H, W)`` in pure torch (float64, on the input's device)."""
    import torch

    check_normalization(normalization, percentile)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    flat = maps.detach().to(torch.float64).flatten(1).clone()
    if flat.shape[0] == 0 or flat.shape[1] == 0:
        return flat.view_as(maps)
    invalid = ~torch.isfinite(flat).all(dim=1)
    flat = torch.where(invalid[:, None], torch.zeros_like(flat), flat)
    invalid |= flat.amin(dim=1) == flat.amax(dim=1)

    def kth(values: torch.Tensor, quantile: float) -> torch.Tensor:
        # kthvalue is 1-based: the (k + 1)-th smallest is sorted[k].
        return values.kthvalue(quantile_index(values.shape[1], quantile) + 1, dim=1, keepdim=True).values

    if normalization == "minmax":
        flat = flat - flat.amin(dim=1, keepdim=True)
        divisor = flat.amax(dim=1, keepdim=True)
    elif normalization == "max":
        flat = flat.clamp(min=0.0)
        divisor = flat.amax(dim=1, keepdim=True)
    elif normalization == "pas":
        flat = flat - flat.amin(dim=1, keepdim=True)
        divisor = kth(flat, PAS_QUANTILE)
        limit = divisor[:, 0] == 0
        flat = torch.where(limit[:, None], (flat > 0).to(flat.dtype), flat)
        divisor = torch.where(limit[:, None], torch.ones_like(divisor), divisor)
    else:
        flat = (flat - kth(flat, percentile)).clamp(min=0.0)
        divisor = flat.amax(dim=1, keepdim=True)
    invalid |= divisor[:, 0] == 0
    flat = flat / torch.where(invalid[:, None], torch.ones_like(divisor), divisor)
    if normalization == "pas":
        flat = flat.clamp(max=1.0)
    flat[invalid] = 0.0
    return flat.view_as(maps)
