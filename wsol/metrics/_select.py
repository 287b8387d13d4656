"""Exact k-th smallest value of a map and the PaS / IVR rules in one compiled pass each (numba).

The k-th value is found by a histogram over ``[min, max]``: ``bin(v) = int((v - min) * scale)`` never
decreases as ``v`` grows (rounded subtraction and multiplication by a positive constant are monotone), so
every value in a lower bin is below every value in a higher one; the k-th value is then the right order
statistic among the few values of its bin. It equals ``np.sort(values)[k]`` exactly, in linear time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["ivr_normalize", "kth_smallest", "pas_normalize", "warm_up"]

_BINS = 4096


@njit(cache=True, nogil=True)
def _kth(values: np.ndarray, k: int, lo: float, hi: float) -> float:
    if hi == lo:
        return lo
    counts = np.zeros(_BINS, np.int64)
    scale = _BINS / (hi - lo)
    for v in values:
        counts[min(int((v - lo) * scale), _BINS - 1)] += 1
    below, target = 0, 0
    for b in range(_BINS):
        if below + counts[b] > k:
            target = b
            break
        below += counts[b]
    chosen = np.empty(counts[target], np.float64)
    m = 0
    for v in values:
        if min(int((v - lo) * scale), _BINS - 1) == target:
            chosen[m] = v
            m += 1
    chosen.sort()
    return chosen[k - below]


@njit(cache=True, nogil=True)
def _range(values: np.ndarray) -> tuple[float, float, bool]:
    lo, hi = np.inf, -np.inf
    for v in values:
        if not np.isfinite(v):
            return 0.0, 0.0, False
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi, True


@njit(cache=True, nogil=True)
def _pas(values: np.ndarray, k: int, out: np.ndarray) -> None:
    lo, hi, finite = _range(values)
    if not finite or lo == hi:
        out[:] = 0.0
        return
    for i in range(values.size):
        out[i] = values[i] - lo
    # The shifted map's extremes are 0 and hi - lo exactly (subtracting a constant is monotone).
    divisor = _kth(out, k, 0.0, hi - lo)
    if divisor == 0.0:
        for i in range(out.size):
            out[i] = 1.0 if out[i] > 0.0 else 0.0
        return
    for i in range(out.size):
        out[i] = min(1.0, out[i] / divisor)


@njit(cache=True, nogil=True)
def _ivr(values: np.ndarray, k: int, out: np.ndarray) -> None:
    lo, hi, finite = _range(values)
    if not finite or lo == hi:
        out[:] = 0.0
        return
    cut = _kth(values, k, lo, hi)
    peak = hi - cut  # the max of relu(m - cut), by monotonicity
    if peak <= 0.0:
        out[:] = 0.0
        return
    for i in range(values.size):
        out[i] = max(0.0, values[i] - cut) / peak


def kth_smallest(values: np.ndarray, k: int) -> float:
    """``np.sort(values.ravel())[k]`` in linear time, for finite values."""
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if not 0 <= k < flat.size:
        raise ValueError(f"k must lie in [0, {flat.size}), got {k}")
    lo, hi, finite = _range(flat)
    if not finite:
        raise ValueError("values must be finite")
    return float(_kth(flat, k, lo, hi))


def pas_normalize(scoremap: np.ndarray, k: int) -> np.ndarray:
    """PaS of one float64 map with the sorted index ``k`` (zeros for a map with NaN/inf or constant)."""
    flat = np.ascontiguousarray(scoremap, dtype=np.float64).ravel()
    out = np.empty_like(flat)
    _pas(flat, k, out)
    return out.reshape(np.shape(scoremap))


def ivr_normalize(scoremap: np.ndarray, k: int) -> np.ndarray:
    """IVR of one float64 map with the sorted index ``k`` (zeros for a map with NaN/inf, constant, or empty)."""
    flat = np.ascontiguousarray(scoremap, dtype=np.float64).ravel()
    out = np.empty_like(flat)
    _ivr(flat, k, out)
    return out.reshape(np.shape(scoremap))


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) now."""
    pas_normalize(np.arange(4.0), 3)
    ivr_normalize(np.arange(4.0), 2)
    kth_smallest(np.arange(4.0), 1)
