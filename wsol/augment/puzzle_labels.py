"""PuzzleMix's block labelling: which image each block of the mixed image shows (docs/methods.md §18.2).

Each block ``i`` of an ``n x n`` grid gets a label ``k`` in ``0..L-1``; label ``k`` gives image a the weight
``m_k = 1 - k / (L - 1)`` (label 0: image a alone, label ``L - 1``: image b alone, the others a blend). The
labelling minimises

    E(k) = sum_i [ m_{k_i} s_b(i) + (1 - m_{k_i}) s_a(i) ]                      lost saliency
         + (eta / n^2) sum_i -log p(k_i | lam)                                   prior towards the ratio lam
         + sum_{i~j} (beta' + gamma beta' d_ij) (k_i - k_j)^2 / (L - 1)^2       label and data smoothness

with ``s`` the block-pooled saliency normalised to sum 1 per image, ``p(k | lam)`` the binomial
``C(L-1, k) lam^(L-1-k) (1-lam)^k``, ``beta' = beta / (16 n)``, and ``d_ij`` how badly the two images' pixels
meet across the boundary of blocks ``i`` and ``j``. That boundary term depends on which image each side shows;
it is split exactly into a part per block (added to the unary costs) and a part on label changes (the edge
weight). The energy is minimised by α-β swap graph cuts (the GCO library through ``gco-wrapper``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["block_masks", "boundary_mismatch", "integer_energies", "label_energies", "label_prior", "solve_labels"]

# Energies are scaled so that a grid's saliency sums to about 1000 per block before the solver (as the reference).
_SCALE = 1000.0


def label_prior(lam: float, n_labels: int) -> np.ndarray:
    """``-log p(k | lam)`` for ``k = 0..L-1``: binomial with ``L - 1`` draws, image a drawn with probability ``lam``.

    Label ``k`` gives image a the weight ``1 - k / (L - 1)``, so with ``L = 3`` the probabilities are
    ``lam^2``, ``2 lam (1 - lam)`` and ``(1 - lam)^2``.
    """
    if n_labels < 2:
        raise ValueError(f"n_labels must be >= 2, got {n_labels}")
    draws = n_labels - 1
    probs = np.array([math.comb(draws, k) * lam ** (draws - k) * (1.0 - lam) ** k for k in range(n_labels)])
    return -np.log(probs + 1e-8)


def _boundary_pairs(pooled: Tensor, cells: int, axis: int) -> tuple[Tensor, Tensor]:
    """The last row (axis 2) or column (axis 3) of each block but the last, and the first of each block but the
    first, on a grid pooled to ``cells`` cells per block."""
    size = pooled.shape[axis]
    before = pooled.narrow(axis, cells - 1, size - cells)[(slice(None),) * axis + (slice(None, None, cells),)]
    after = pooled.narrow(axis, cells, size - cells)[(slice(None),) * axis + (slice(None, None, cells),)]
    return before, after


def boundary_mismatch(first: Tensor, second: Tensor, blocks: int) -> tuple[Tensor, Tensor]:
    """Mean absolute colour difference across every block boundary, ``first`` on the top/left side, ``second`` on
    the bottom/right.

    The images come pooled to cells (``neigh x neigh`` pixels averaged); the difference is taken between the two
    cell rows (columns) that meet at the boundary, averaged over channels and along the block's side.

    Args:
        first: ``(B, C, h, w)`` pooled unnormalised images, ``h`` and ``w`` divisible by ``blocks``.
        second: pooled images of the same shape.
        blocks: blocks per side ``n``.

    Returns:
        ``(B, n - 1, n)`` for the boundaries below each block row and ``(B, n, n - 1)`` for those right of each
        block column.
    """
    cells_h, cells_w = first.shape[2] // blocks, first.shape[3] // blocks
    top, _ = _boundary_pairs(first, cells_h, 2)
    _, bottom = _boundary_pairs(second, cells_h, 2)
    vertical = F.avg_pool2d((top - bottom).abs().mean(1, keepdim=True), (1, cells_w)).squeeze(1)
    left, _ = _boundary_pairs(first, cells_w, 3)
    _, right = _boundary_pairs(second, cells_w, 3)
    horizontal = F.avg_pool2d((left - right).abs().mean(1, keepdim=True), (cells_h, 1)).squeeze(1)
    return vertical, horizontal


def label_energies(
    saliency_a: Tensor,
    saliency_b: Tensor,
    images_a: Tensor,
    images_b: Tensor,
    lam: float,
    n_labels: int,
    beta: float,
    gamma: float,
    eta: float,
    neigh: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The labelling energy of every image pair, as arrays for the graph-cut solver.

    Args:
        saliency_a: ``(B, n, n)`` block saliency of image a, summing to 1 per image.
        saliency_b: the same for image b.
        images_a: ``(B, C, H, W)`` unnormalised images a (for the boundary term).
        images_b: the partners b.
        lam: the sampled mixing ratio (image a's expected share).
        n_labels: number of mixing levels ``L``.
        beta: label smoothness (the reference's ``beta``; ``beta' = beta / (16 n)`` on the grid).
        gamma: data smoothness, relative to ``beta'``.
        eta: weight of the prior towards ``lam``.
        neigh: pooling cell of the boundary term, in pixels.

    Returns:
        ``unary (B, n, n, L)``, ``pairwise (L, L)``, vertical edge weights ``(B, n - 1, n)`` and horizontal edge
        weights ``(B, n, n - 1)``, all float64 and scaled by ``1000 n^2``.
    """
    n = saliency_a.shape[-1]
    beta_grid = beta / n / 16.0
    weights = 1.0 - torch.arange(n_labels, dtype=torch.float64) / (n_labels - 1)  # image a's weight per label
    s_a, s_b = saliency_a.double(), saliency_b.double()
    # Data smoothness d[s, t]: image s above (left of) the boundary, image t below (right); 0 is a, 1 is b.
    pooled = (F.avg_pool2d(images_a, neigh), F.avg_pool2d(images_b, neigh))
    pairs = {(s, t): boundary_mismatch(pooled[s], pooled[t], n) for s in (0, 1) for t in (0, 1)}
    own_a, own_b = s_b.clone(), s_a.clone()  # cost of showing image a (b's saliency lost) / image b at a block
    edges = []
    for axis in (0, 1):  # 0: vertical neighbours (rows r, r + 1), 1: horizontal
        d = {key: value[axis].double() * beta_grid * gamma for key, value in pairs.items()}
        first = (slice(None), slice(None, -1)) if axis == 0 else (slice(None), slice(None), slice(None, -1))
        second = (slice(None), slice(1, None)) if axis == 0 else (slice(None), slice(None), slice(1, None))
        # E(s, t) = unary_first(s) + unary_second(t) + w [s != t] + const, exactly, with these shares:
        own_a[first] += (d[0, 0] + d[0, 1]) / 2
        own_b[first] += (d[1, 0] + d[1, 1]) / 2
        own_a[second] += (d[0, 0] + d[1, 0]) / 2
        own_b[second] += (d[0, 1] + d[1, 1]) / 2
        change = (d[0, 1] + d[1, 0] - d[0, 0] - d[1, 1]) / 2
        edges.append((beta_grid + change).clamp_min(0.0))
    prior = torch.from_numpy(label_prior(lam, n_labels)) * eta / n**2
    unary = weights * own_a.unsqueeze(-1) + (1.0 - weights) * own_b.unsqueeze(-1) + prior
    levels = np.arange(n_labels, dtype=np.float64)
    pairwise = (levels[:, None] - levels[None, :]) ** 2 / (n_labels - 1) ** 2
    scale = _SCALE * n**2
    return (
        (unary * scale).cpu().numpy(),
        np.ascontiguousarray(pairwise),
        (edges[0] * scale).cpu().numpy(),
        (edges[1] * scale).cpu().numpy(),
    )


# GCO's energy terms are 32-bit ints. Its Python binding turns float costs into ints by multiplying the unary
# costs by 1e5, which overflows (undefined values, a numpy "invalid value encountered in cast" warning) once a
# block holds more than ~1/3 of an image's saliency on an 8x8 grid. So every term is converted here, with one
# scale for the whole grid: the largest term becomes at most GCO's safe coefficient (1e7), and the whole energy
# stays inside int32 even if the library sums it in 32 bits.
_MAX_TERM = 10_000_000
_INT32_MAX = 2**31 - 1


def integer_energies(
    unary: np.ndarray, pairwise: np.ndarray, cost_v: np.ndarray, cost_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One grid's costs as int32 arrays for GCO, all scaled by one factor (the minimiser is unchanged up to
    rounding at ``1e-7`` of the largest term). Each block's label costs are first shifted so its cheapest is 0.

    The label costs ``pairwise`` are made integers by ``(L - 1)^2`` when that is exact (PuzzleMix's squared
    label distance), otherwise by 1000; the edge weights take the same division.

    Raises:
        ValueError: a cost is NaN or infinite (a non-finite saliency map).
    """
    arrays = {"unary": unary, "pairwise": pairwise, "cost_v": cost_v, "cost_h": cost_h}
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise ValueError(f"PuzzleMix labelling: {name} holds NaN or infinite costs (is the saliency finite?)")
        if name != "unary" and np.any(array < 0):
            raise ValueError(f"PuzzleMix labelling: {name} holds negative costs")
    # A constant per block changes no minimiser: each block's cheapest label costs 0, so every term is >= 0.
    unary = unary - unary.min(axis=-1, keepdims=True)
    n_labels = pairwise.shape[0]
    factor = float((n_labels - 1) ** 2)
    if not np.allclose(pairwise * factor, np.rint(pairwise * factor), rtol=0.0, atol=1e-9):
        factor = 1000.0
    smooth = np.rint(pairwise * factor)
    edges_v, edges_h = cost_v / factor, cost_h / factor
    largest = max(
        float(unary.max(initial=0.0)),
        max(float(edges_v.max(initial=0.0)), float(edges_h.max(initial=0.0))) * float(smooth.max(initial=0.0)),
    )
    n_terms = unary.shape[0] * unary.shape[1] + cost_v.size + cost_h.size
    target = min(_MAX_TERM, _INT32_MAX // max(1, n_terms))
    scale = target / largest if largest > 0 else 1.0
    return (
        np.ascontiguousarray(np.rint(unary * scale), dtype=np.int32),
        np.ascontiguousarray(smooth, dtype=np.int32),
        np.ascontiguousarray(np.rint(edges_v * scale), dtype=np.int32),
        np.ascontiguousarray(np.rint(edges_h * scale), dtype=np.int32),
    )


def solve_labels(unary: np.ndarray, pairwise: np.ndarray, cost_v: np.ndarray, cost_h: np.ndarray) -> np.ndarray:
    """The α-β swap labelling of one grid (GCO), ``(n, n)`` ints in ``0..L-1``; costs as :func:`label_energies`
    returns them (float), converted by :func:`integer_energies`.

    Raises:
        ImportError: if ``gco-wrapper`` is not installed.
        ValueError: a cost is NaN or infinite, or a label or edge cost negative.
    """
    try:
        import gco
    except ImportError as err:  # pragma: no cover - a dependency of wsol
        raise ImportError("PuzzleMix needs the graph-cut package gco-wrapper: pip install gco-wrapper") from err
    n = unary.shape[0]
    labels = gco.cut_grid_graph(*integer_energies(unary, pairwise, cost_v, cost_h), algorithm="swap")
    return np.asarray(labels, dtype=np.int64).reshape(n, unary.shape[1])


def block_masks(
    saliency_a: Tensor,
    saliency_b: Tensor,
    images_a: Tensor,
    images_b: Tensor,
    lam: float,
    n_labels: int = 3,
    beta: float = 1.2,
    gamma: float = 0.5,
    eta: float = 0.2,
    neigh: int = 4,
) -> Tensor:
    """Image a's weight per block, ``(B, n, n)`` in ``{0, 1/(L-1), ..., 1}``: the minimiser of the labelling
    energy (see the module docstring) for every pair; arguments as :func:`label_energies`."""
    unary, pairwise, cost_v, cost_h = label_energies(
        saliency_a, saliency_b, images_a, images_b, lam, n_labels, beta, gamma, eta, neigh
    )
    labels = np.stack([solve_labels(unary[i], pairwise, cost_v[i], cost_h[i]) for i in range(unary.shape[0])])
    return 1.0 - torch.from_numpy(labels).to(saliency_a.device, torch.float32) / (n_labels - 1)
