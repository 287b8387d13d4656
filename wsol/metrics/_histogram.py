"""PxAP binning and the foreground/background score histograms in one pass (compiled by numba).

The bins are ``np.histogram``'s over the reference's edges (see :func:`wsol.metrics.pxap_bin_edges`):
``[e_i, e_{i+1})``, the last one closed. The regular edges are ``fl(k * Δ)``, as ``np.arange`` computes
them, so ``floor(s / Δ)`` is off by at most one bin from the true one (by rounding, only within about
1e-13 of an edge); one comparison with each neighbouring edge settles it exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["bin_indices", "histograms", "warm_up"]


@njit(cache=True, nogil=True, inline="always")
def _bin(score: float, edges: np.ndarray, per_bin: float) -> int:
    last = len(edges) - 2
    index = min(max(int(score * per_bin), 0), last)
    while index < last and score >= edges[index + 1]:
        index += 1
    while index > 0 and score < edges[index]:
        index -= 1
    return index


@njit(cache=True, nogil=True)
def _bin_all(scores: np.ndarray, edges: np.ndarray, per_bin: float, out: np.ndarray) -> None:
    for i in range(scores.size):
        out[i] = _bin(np.float64(scores[i]), edges, per_bin)


@njit(cache=True, nogil=True)
def _count(
    scores: np.ndarray, masks: np.ndarray, edges: np.ndarray, per_bin: float, true: np.ndarray, false: np.ndarray
) -> None:
    for i in range(scores.size):
        label = masks[i]
        if label == 1:
            true[_bin(np.float64(scores[i]), edges, per_bin)] += 1
        elif label == 0:
            false[_bin(np.float64(scores[i]), edges, per_bin)] += 1


def _flat(scores: np.ndarray) -> np.ndarray:
    scores = np.ravel(scores)
    return scores if scores.dtype in (np.float32, np.float64) else scores.astype(np.float64)


def bin_indices(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """int64 bin of every score in [0, 1] (any shape), identical to ``np.histogram(scores, bins=edges)``'s."""
    scores = np.asarray(scores)
    out = np.empty(scores.size, np.int64)
    _bin_all(_flat(scores), edges, 1.0 / (edges[1] - edges[0]), out)
    return out.reshape(scores.shape)


def histograms(scores: np.ndarray, masks: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 histograms of the scores where ``masks == 1`` and where ``masks == 0`` (other labels skipped)."""
    true = np.zeros(len(edges) - 1, np.int64)
    false = np.zeros(len(edges) - 1, np.int64)
    _count(_flat(scores), np.ravel(masks), edges, 1.0 / (edges[1] - edges[0]), true, false)
    return true, false


def warm_up() -> None:
    """Compile the binning for float32 and float64 scores (or load it from numba's cache) now."""
    edges = np.append(np.arange(0, 1, 0.5), [1.0, 2.0, 3.0])
    for dtype in (np.float32, np.float64):
        histograms(np.zeros(1, dtype), np.zeros(1, np.uint8), edges)
        bin_indices(np.zeros(1, dtype), edges)
