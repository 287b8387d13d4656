"""Mixup-CAM (Chang et al., BMVC 2020, arXiv 2008.01201): mixup + uncertainty regularization.

There is no official code. The formulas follow the paper as restated in docs/methods.md §2; the
weights are those of the only re-implementation (``liuvince/mva-wsss``), whose entropy term is a no-op
under mixup (computed on the targets). Here it acts on the predictions of the mixed image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from wsol.augment import Mixer, MixUp
from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method

__all__ = ["MixUpCAM", "concentration_loss", "prediction_entropy"]


def prediction_entropy(logits: Tensor, multilabel: bool) -> Tensor:
    """Mean entropy of the predictions (the uncertainty regularizer ``L_ent`` of Mixup-CAM).

    Multi-label: class-wise binary entropy ``-p log p - (1 - p) log(1 - p)`` of ``p = sigmoid(z)``,
    averaged over classes and images. Single-label: softmax entropy ``-sum_c p_c log p_c`` averaged
    over images. Both are computed from log-probabilities, so they stay finite for saturated logits.

    Args:
        logits: ``(B, K)`` logits.
        multilabel: sigmoid (True) or softmax (False) predictions.

    Returns:
        A scalar, differentiable with respect to ``logits``.
    """
    if multilabel:
        p = torch.sigmoid(logits)
        # log p = -softplus(-z), log(1 - p) = -softplus(z)
        return (p * F.softplus(-logits) + (1 - p) * F.softplus(logits)).mean()
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def concentration_loss(cams: Tensor, weights: Tensor, eps: float = 1e-3) -> Tensor:
    """Spatial concentration loss ``L_con`` (SCOPS, Hung et al. CVPR 2019, as used by Mixup-CAM).

    Each class map is made a spatial pdf ``M^_c = (ReLU(M_c) + eps) / sum_hw (ReLU(M_c) + eps)``
    (``eps`` keeps ``1 / sum`` bounded, as in SCOPS); with pixel-centre coordinates ``p`` in
    [-1, 1], its centroid is ``mu_c = sum p M^_c`` and the loss is the variance
    ``sum_hw ||p - mu_c||^2 M^_c``, weighted per class by ``weights`` (the mixed target: a class of
    image a counts ``lam``, one of image b ``1 - lam``, as in the re-implementation), summed over
    classes and averaged over images.

    Args:
        cams: ``(B, K, h, w)`` raw class activation maps.
        weights: ``(B, K)`` non-negative class weights (zero for absent classes).
        eps: floor added to every pixel before normalising.

    Returns:
        A scalar.
    """
    b, k, h, w = cams.shape
    pdf = F.relu(cams) + eps
    pdf = pdf / pdf.sum(dim=(2, 3), keepdim=True)
    ys = (torch.arange(h, device=cams.device, dtype=cams.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=cams.device, dtype=cams.dtype) + 0.5) * (2.0 / w) - 1.0
    mu_y = (pdf.sum(dim=3) * ys).sum(dim=2, keepdim=True)  # (B, K, 1)
    mu_x = (pdf.sum(dim=2) * xs).sum(dim=2, keepdim=True)
    var = (pdf.sum(dim=3) * (ys - mu_y) ** 2).sum(dim=2) + (pdf.sum(dim=2) * (xs - mu_x) ** 2).sum(dim=2)
    return (weights * var).sum(dim=1).mean()


@register_method
class MixUpCAM(WSOLModule):
    """CAM trained on mixed images with entropy and concentration regularizers.

    ``L = L_cls(f(x~), y~) + ent_weight * L_ent(f(x~)) + con_weight * L_con(M(x~), y~)``
    (Eq. (1)-(4) of arXiv 2008.01201 as restated in docs/methods.md §2.1), where ``x~, y~`` come from the
    mixer, ``L_cls`` is the base soft-target CE (single-label) or BCE (multi-label), ``L_ent`` is
    :func:`prediction_entropy` of the mixed image's logits (entropy minimisation: mixing makes the
    classifier under-confident, which spreads but also flattens the maps) and ``L_con`` is
    :func:`concentration_loss` of its CAMs.

    Mixing is what the method is, so ``mixer=None`` means the re-implementation's
    ``MixUp(alpha=0.2)`` (the paper's alpha is unverified). Pass any other mixer (e.g. ``FMix`` for
    FMix-CAM), or ``MixUp(prob=0.0)`` to ablate mixing and keep the regularizers.

    Args:
        mixer: batch mixer; None for ``MixUp(alpha=0.2)``.
        ent_weight: ``lambda_ent`` (0.02 in the re-implementation).
        con_weight: ``lambda_con`` (2e-4 in the re-implementation).
        con_eps: per-pixel floor of the concentration pdf.
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, ...).
    """

    def __init__(
        self,
        mixer: Mixer | None = None,
        ent_weight: float = 0.02,
        con_weight: float = 2e-4,
        con_eps: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        if ent_weight < 0 or con_weight < 0 or con_eps <= 0:
            raise ValueError("ent_weight and con_weight must be >= 0 and con_eps > 0")
        super().__init__(mixer=mixer if mixer is not None else MixUp(alpha=0.2), **kwargs)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = batch["image"], self.targets(batch)
        mixed = self.mix(images, targets)
        logits, cams = self.forward_with_cams(mixed.images)
        cls = self.classification_loss(logits, mixed.targets)
        ent = prediction_entropy(logits, self.hparams.multilabel)
        con = concentration_loss(cams, mixed.targets, self.hparams.con_eps)
        total = cls + self.hparams.ent_weight * ent + self.hparams.con_weight * con + mixed.extra_loss()
        return total, {"cls": cls, "ent": ent, "con": con, **mixed.losses}
