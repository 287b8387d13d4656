"""PuzzleMix's transport: move each image's salient blocks to where its mask shows it (docs/methods.md §18.3).

For one image with block saliency ``s`` (``n x n``, summing to 1) and mask ``z`` (1 where the mixed image shows
it, 0 elsewhere), the plan is the permutation ``pi`` of the ``n^2`` blocks minimising

    sum_i  eps * C(i, pi(i)) - s(i) z(pi(i)),      C(i, j) = ||p_i - p_j||^2 / (n - 1)^2

(``p`` the block's grid position): salient blocks move into the shown region, at a cost for moving far. It is
solved exactly as a linear assignment problem (``scipy.optimize.linear_sum_assignment``), so the result is always
a permutation of the blocks within the image.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["grid_cost", "move_blocks", "transport_plans"]


def grid_cost(n: int) -> np.ndarray:
    """``(n^2, n^2)`` squared distance between the positions of blocks ``i`` and ``j`` (row-major), over
    ``(n - 1)^2``."""
    rows, cols = np.divmod(np.arange(n * n), n)
    dist = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return dist.astype(np.float64) / max(n - 1, 1) ** 2


def transport_plans(saliency: Tensor, shown: Tensor, eps: float) -> np.ndarray:
    """The destination of every block of every image.

    Args:
        saliency: ``(B, n, n)`` block saliency, summing to 1 per image.
        shown: ``(B, n, n)`` weight of the image in the mix per block; blocks with weight > 0 count as shown.
        eps: cost of moving a block across the whole grid, relative to its saliency.

    Returns:
        ``(B, n^2)`` ints: block ``i`` (row-major) moves to position ``dest[b, i]``; a permutation per image.
    """
    b, n = saliency.shape[0], saliency.shape[-1]
    cost_move = eps * grid_cost(n)
    s = saliency.reshape(b, -1).double().cpu().numpy()
    z = (shown.reshape(b, -1) > 0).double().cpu().numpy()
    dest = np.empty((b, n * n), dtype=np.int64)
    for i in range(b):
        rows, cols = linear_sum_assignment(cost_move - s[i][:, None] * z[i][None, :])
        dest[i, rows] = cols
    return dest


def move_blocks(images: Tensor, dest: np.ndarray | Tensor, n: int) -> Tensor:
    """``images`` with block ``i`` of each image moved to position ``dest[b, i]`` (an ``n x n`` grid of equal
    blocks; ``H`` and ``W`` divisible by ``n``)."""
    b, c, h, w = images.shape
    bh, bw = h // n, w // n
    blocks = images.reshape(b, c, n, bh, n, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, c, bh, bw)
    dest = torch.as_tensor(dest, device=images.device, dtype=torch.long)
    source = torch.argsort(dest, dim=1)  # the block that lands at each position
    moved = torch.gather(blocks, 1, source.view(b, n * n, 1, 1, 1).expand_as(blocks))
    return moved.reshape(b, n, n, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
