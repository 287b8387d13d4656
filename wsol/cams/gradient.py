"""Gradient-weighted CAMs: Grad-CAM, Grad-CAM++, XGrad-CAM and LayerCAM.

``g = dY^c / dA`` is the gradient of the pre-softmax class score with respect to the target layer's
activations ``A`` (``(B, C, h, w)``); each method only maps ``(A, g)`` to weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsol.cams.base import CAMInputs, CAMMethod, register_cam

_EPS = 1e-7


@register_cam("gradcam")
class GradCAM(CAMMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``ReLU(sum_k alpha_k A_k)``.

    ``alpha_k = 1/Z sum_ij g_k(i, j)`` (Eq. (1) of arXiv 1610.02391), the map is Eq. (2). On a
    GAP-linear model ``alpha = w^c / (h w)``, so after ReLU and min-max it equals CAM.
    """

    def weights(self, inputs: CAMInputs) -> Tensor:
        return inputs.gradients.mean(dim=(2, 3))


@register_cam("gradcampp")
class GradCAMpp(CAMMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): pixel-weighted positive gradients.

    ``alpha_k(i, j) = g^2 / (2 g^2 + sum_ab A_k(a, b) g^3)`` — Eq. (19) of arXiv 1710.11063, the
    closed form for an exponentiated score, which expresses the higher derivatives through powers of
    the first — and ``w_k = sum_ij alpha_k(i, j) ReLU(g_k(i, j))``. ``alpha`` is 0 where ``g`` is 0.
    """

    def weights(self, inputs: CAMInputs) -> Tensor:
        g, a = inputs.gradients, inputs.activations
        g2 = g.pow(2)
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
        alpha = torch.where(g2 > 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g2))
        return (alpha * torch.relu(g)).sum(dim=(2, 3))


@register_cam("xgradcam")
class XGradCAM(CAMMethod):
    """XGrad-CAM (Fu et al., BMVC 2020, arXiv 2008.02312): activation-weighted gradients.

    ``w_k = sum_ij (A_k(i, j) / sum_ab A_k(a, b)) g_k(i, j)``: the weights that best satisfy the
    paper's sensitivity and conservation axioms; the map is ``ReLU(sum_k w_k A_k)``.
    """

    def weights(self, inputs: CAMInputs) -> Tensor:
        a = inputs.activations
        return (a * inputs.gradients).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + _EPS)


@register_cam("layercam")
class LayerCAM(CAMMethod):
    """LayerCAM (Jiang et al., IEEE TIP 30, 2021): element-wise positive gradients.

    ``M = ReLU(sum_k ReLU(g_k) * A_k)`` with the weight taken per location rather than pooled, which
    keeps the map meaningful at shallow layers.
    """

    def weights(self, inputs: CAMInputs) -> Tensor:
        return torch.relu(inputs.gradients)
