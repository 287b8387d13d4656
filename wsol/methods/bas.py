"""BAS: background activation suppression (Wu, Zhai & Cao, CVPR 2022, arXiv 2112.00580).

Written from the paper's description of the method (its abstract, method section as summarised in public write-ups,
and the passages the authors quote) and from the authors' answers in their repository's issue threads
(wpy1999/BAS #2, #3, #4); the authors' code is not used. What those sources state:

* A generator turns the backbone features ``F`` into one foreground prediction map per class, ``M in [0, 1]^{K x h
  x w}`` (sigmoid output); training takes the ground-truth class's map ``M*`` and its complement ``1 - M*``.
* The activation map constraint (AMC) scores the whole features ``F`` and the background ``F_bg = F * (1 - M*)``
  with the same classifier ``f2``; with ``y_c`` the ground-truth class's logit, ``S = ReLU(y_c(F))`` and
  ``S_bg = ReLU(y_c(F_bg))``, and the background activation suppression loss is ``L_BAS = S_bg / S`` (Eq. 3),
  averaged over the batch. The classifier of the background branch is frozen in back-propagation (Sec. 3.2: its
  gradient reaches the generator and the features, not ``f2``'s parameters; issue #2).
* The denominator ``S`` is detached (Fig. 2); without it training collapses (issue #2).
* A ratio ``>= 1`` is "marked as a constant" (Sec. 4, for stability early in training; issue #2). The authors'
  loss function (quoted in issue #4) writes 0 there, "or 1".
* Area constraint ``L_AC = mean_{i,j} M*(i, j)`` per image, averaged over the batch; the authors add it to the
  ratio 1:1 in one function (issue #4).
* Foreground region guidance ``L_FRG``: the classification loss of ``f2`` on ``F_fg = F * M*``, which keeps the
  object inside the foreground map; ``L_CLS`` is the classification loss on ``F``.
* Inference averages the maps of the top-k predicted classes (abstract); k was chosen per backbone for
  the best result, and seeds move GT-known Loc by about +-1 point (issue #3).

Choices made here:

* The extractor is the whole backbone and ``f2`` is the CAM head (GAP + linear), so ``y(F * W) = head(F * W)``;
  the paper's ``f2`` also holds the last convolutional stage, which would need a split backbone.
* The generator is ``conv3x3 -> ReLU -> conv1x1 -> sigmoid`` (``generator_channels`` wide).
* Total loss ``L = L_CLS + frg_weight L_FRG + bas_weight L_BAS + area_weight L_AC`` (weights 1 by default; the
  per-dataset values of the authors' recipe could not be confirmed from the paper text).
* A clamped ratio takes the value ``ratio_clamp`` (not the authors' 0): its gradient is zero either way, and the
  logged ``bas`` term then reads as a saturated ratio.
* ``inference_topk = 1`` scores each class's own map (the ground-truth class's map in the GT-known evaluation, the
  map BAS trains); ``k > 1`` gives every class channel the mean map of the k most probable classes (the paper's
  inference).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.bas_net import BASNet, ForegroundGenerator, topk_mean_map

__all__ = ["BAS", "ForegroundGenerator", "area_loss", "bas_ratio_loss", "gt_activation", "topk_mean_map"]


def gt_activation(logits: Tensor, labels: Tensor) -> Tensor:
    """The activation value ``S = ReLU(y_c)`` of each image's class ``c = labels[b]``, from logits ``(B, K)``."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (B, K) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return logits[torch.arange(logits.shape[0], device=logits.device), labels].relu()


def bas_ratio_loss(
    background: Tensor,
    full: Tensor,
    detach_denominator: bool = True,
    ratio_clamp: float | None = 1.0,
    eps: float = 1e-8,
) -> Tensor:
    """``L_BAS = mean_b S_bg[b] / (S[b] + eps)`` (Eq. 3 of arXiv 2112.00580).

    Args:
        background: ``(B,)`` background activations ``S_bg`` (non-negative, see :func:`gt_activation`).
        full: ``(B,)`` whole-image activations ``S``.
        detach_denominator: stop the gradient through ``S`` (the paper's Fig. 2): the loss can then only be lowered
            by suppressing the background, not by inflating the whole-image activation.
        ratio_clamp: ratios ``>= ratio_clamp`` are replaced by the constant ``ratio_clamp`` (no gradient), the
            paper's stabilisation at 1; None keeps every ratio as it is.
        eps: keeps the ratio finite when ``S = 0``.
    """
    if background.shape != full.shape or background.ndim != 1:
        raise ValueError(f"background and full must be (B,), got {tuple(background.shape)} and {tuple(full.shape)}")
    if ratio_clamp is not None and ratio_clamp <= 0:
        raise ValueError(f"ratio_clamp must be > 0 or None, got {ratio_clamp}")
    ratio = background / ((full.detach() if detach_denominator else full) + eps)
    if ratio_clamp is not None:
        ratio = torch.where(ratio < ratio_clamp, ratio, torch.full_like(ratio, ratio_clamp))
    return ratio.mean()


def area_loss(foreground: Tensor) -> Tensor:
    """The area constraint ``L_AC = mean_b mean_{i,j} M*_b(i, j)`` over the ground-truth class's maps ``(B, h, w)``."""
    if foreground.ndim != 3:
        raise ValueError(f"foreground must be (B, h, w), got {tuple(foreground.shape)}")
    return foreground.flatten(1).mean(dim=1).mean()


@register_method
class BAS(WSOLModule):
    """A classifier plus a foreground-map generator trained by suppressing the classifier's background activation.

    For backbone features ``F`` and ground-truth class ``c``: the generator's map ``M* = G(F)_c``, the logits
    ``y = f2(F)``, ``y_fg = f2(F * M*)`` and ``y_bg = f2'(F * (1 - M*))``, where ``f2`` is the CAM head and ``f2'``
    the same head with frozen parameters. The training loss is

        ``L = CE(y, c) + frg_weight CE(y_fg, c) + bas_weight mean(S_bg / S) + area_weight mean(M*)``

    with ``S = ReLU(y_c)`` (detached by default) and ``S_bg = ReLU(y_bg,c)`` (see the module docstring for the
    paper's equations and the choices made), logged as ``cls``, ``frg``, ``bas`` and ``area``. The logits are the
    head's on ``F``; the localization maps are the generator's, of every class (``inference_topk = 1``) or the mean
    of the top-k predicted classes' maps in every channel. The generator trains at ``lr * head_lr_mult``.

    Args:
        bas_weight: weight of ``L_BAS``.
        area_weight: weight of the area constraint ``L_AC``.
        frg_weight: weight of the foreground region guidance ``L_FRG``.
        detach_denominator: detach the whole-image activation ``S`` in ``L_BAS`` (the paper's Fig. 2).
        ratio_clamp: ratios at or above it become this constant (no gradient); the paper's 1; None disables.
        generator_channels: width of the generator's 3x3 convolution; None for ``min(C, 512)`` with ``C`` the
            backbone's channels.
        inference_topk: number of most probable classes whose maps are averaged at inference; 1 keeps each class's
            own map.
        warmup_epochs_loc: epochs of classification-only training before the generator's losses switch on (0: from
            the first step, as in the paper, whose backbone is pretrained; from scratch, a warm-up lets the
            classifier learn before its background activation is suppressed).
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, ...). ``mixer`` and
            ``multilabel`` are not supported: the foreground map is chosen by one class per image.
    """

    def __init__(
        self,
        bas_weight: float = 1.0,
        area_weight: float = 1.0,
        frg_weight: float = 1.0,
        detach_denominator: bool = True,
        ratio_clamp: float | None = 1.0,
        generator_channels: int | None = None,
        inference_topk: int = 1,
        warmup_epochs_loc: int = 0,
        **kwargs: Any,
    ) -> None:
        for name, value in (("bas_weight", bas_weight), ("area_weight", area_weight), ("frg_weight", frg_weight)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(detach_denominator, bool):
            raise ValueError(f"detach_denominator must be a bool, got {detach_denominator!r}")
        if ratio_clamp is not None and (
            isinstance(ratio_clamp, bool) or not isinstance(ratio_clamp, int | float) or ratio_clamp <= 0
        ):
            raise ValueError(f"ratio_clamp must be > 0 or None, got {ratio_clamp!r}")
        if generator_channels is not None and (
            isinstance(generator_channels, bool) or not isinstance(generator_channels, int) or generator_channels < 1
        ):
            raise ValueError(f"generator_channels must be a positive int or None, got {generator_channels!r}")
        if isinstance(inference_topk, bool) or not isinstance(inference_topk, int) or inference_topk < 1:
            raise ValueError(f"inference_topk must be a positive int, got {inference_topk!r}")
        if isinstance(warmup_epochs_loc, bool) or not isinstance(warmup_epochs_loc, int) or warmup_epochs_loc < 0:
            raise ValueError(f"warmup_epochs_loc must be an int >= 0, got {warmup_epochs_loc!r}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by BAS: the foreground map is chosen by one class per image")
        if kwargs.get("multilabel"):
            raise ValueError("multilabel is not supported by BAS: the foreground map is chosen by one class per image")
        super().__init__(**kwargs)

    def build_network(self, backbone: nn.Module) -> BASNet:
        hp = self.hparams
        return BASNet(backbone, hp.num_classes, hp.generator_channels, hp.inference_topk)

    # ------------------------------------------------------------------------------------- losses
    def frozen_head_logits(self, features: Tensor) -> Tensor:
        """Logits of the head with its parameters cut from the graph (the paper's frozen background ``f2``)."""
        bias = self.head.bias
        return F.linear(
            features.mean(dim=(2, 3)), self.head.weight.detach().flatten(1), None if bias is None else bias.detach()
        )

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_CLS + frg_weight L_FRG + bas_weight L_BAS + area_weight L_AC``, logged as cls, frg, bas, area."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        labels = targets.argmax(dim=1)
        features = self.features(images)
        logits = self.head(features)
        cls = self.classification_loss(logits, targets)
        active = self.localization_active()
        # During the warm-up the generator's terms are only monitored: no graph is kept for them.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            rows = torch.arange(features.shape[0], device=features.device)
            foreground = self.net.generator(features)[rows, labels]  # M*: the ground-truth class's map (B, h, w)
            mask = foreground[:, None]
            frg = self.classification_loss(self.head(features * mask), targets)
            bas = bas_ratio_loss(
                gt_activation(self.frozen_head_logits(features * (1.0 - mask)), labels),
                gt_activation(logits, labels),
                detach_denominator=hp.detach_denominator,
                ratio_clamp=hp.ratio_clamp,
            )
            area = area_loss(foreground)
        total = cls + hp.frg_weight * frg + hp.bas_weight * bas + hp.area_weight * area if active else cls
        return total, {"cls": cls, "frg": frg, "bas": bas, "area": area}

    def localization_active(self) -> bool:
        """Whether the generator's losses are trained in the current epoch (after ``warmup_epochs_loc``)."""
        return self.current_epoch >= self.hparams.get("warmup_epochs_loc", 0)
