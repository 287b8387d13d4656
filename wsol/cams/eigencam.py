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
        a = inputs.activations.flatten(2).transpose(1, 2)  # (B, hw, C)
        v1 = torch.linalg.svd(a.float(), full_matrices=False).Vh[:, 0].to(a.dtype)  # (B, C)
        projection = torch.einsum("bnc,bc->bn", a, v1)
        total = a.sum(dim=2)
        centred = (projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))
        sign = torch.where(centred.sum(1) < 0, -1.0, 1.0).to(a.dtype)
        return v1 * sign[:, None]

    def class_maps(self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor) -> Tensor:
        # Class-agnostic: one SVD per image, whatever the number of targets.
        inputs = CAMInputs(activations, None, targets[:, 0], logits, images)
        maps = torch.einsum("bc,bchw->bhw", self.weights(inputs), activations)
        return maps[:, None].expand(-1, targets.shape[1], -1, -1)
