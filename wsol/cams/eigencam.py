"""Eigen-CAM: the first principal component of the activations (Muhammad & Yeasin, IJCNN 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from wsol.cams.base import CAMInputs, CAMMethod, register_cam


@register_cam("eigencam")
class EigenCAM(CAMMethod):
    """Eigen-CAM (arXiv 2008.00299): ``L = A V_1``, the activations projected on their first right
    singular vector.

    Per image, ``A`` is read as an ``(h w) x C`` matrix and factorised ``A = U S V^T``; the map is the
    projection on ``V_1``. It is class-agnostic (``targets`` only select which copies are returned) and
    needs no gradient. An SVD fixes ``V_1`` only up to sign; the sign is chosen so that the map
    correlates positively with the channel sum of the activations (for non-negative activations
    that makes it non-negative). No centring and no ReLU, as in the paper.
    """

    uses_gradients = False
    relu = False

    def weights(self, inputs: CAMInputs) -> Tensor:
        a = inputs.activations.flatten(2).transpose(1, 2)  # (B, n = hw, C)
        v1 = _first_right_singular_vector(a)
        projection = torch.einsum("bnc,bc->bn", a, v1)
        total = a.sum(dim=2)
        centred = (projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))
        sign = torch.where(centred.sum(1) < 0, -1.0, 1.0).to(a.dtype)
        return v1 * sign[:, None]

    def class_maps(self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor) -> Tensor:
        # Class-agnostic: one decomposition per image, whatever the number of targets.
        inputs = CAMInputs(activations, None, targets[:, 0], logits, images)
        maps = torch.einsum("bc,bchw->bhw", self.weights(inputs), activations)
        return maps[:, None].expand(-1, targets.shape[1], -1, -1)


def _first_right_singular_vector(a: Tensor) -> Tensor:
    """``V_1`` of ``a = U S V^T`` per batch item, from the eigenvectors of the smaller Gram matrix.

    A batched SVD of ``(hw, C)`` matrices is LAPACK-bound on CPU; the top eigenvector of ``a a^T``
    (``hw x hw``, 49 x 49 at 224 px) or ``a^T a`` gives the same vector for a fraction of the cost.
    The Gram matrix is formed in float64 so that squaring the condition number costs no accuracy.
    """
    a64 = a.double()
    if a.shape[1] <= a.shape[2]:
        values, vectors = torch.linalg.eigh(a64 @ a64.transpose(1, 2))
        u1 = vectors[..., -1]  # (B, n), eigenvalues ascending
        v1 = torch.einsum("bnc,bn->bc", a64, u1) / values[..., -1:].clamp_min(1e-300).sqrt()
    else:
        v1 = torch.linalg.eigh(a64.transpose(1, 2) @ a64)[1][..., -1]
    return v1.to(a.dtype)
