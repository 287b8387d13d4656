"""BAS: background activation suppression (Wu, Zhai & Cao, CVPR 2022, arXiv 2112.00580).

Written first from the paper's description of the method and the authors' answers in their repository's issue
threads (wpy1999/BAS #2, #3, #4), then checked against the authors' training code (read for understanding, not
copied: its licence forbids it). What the method is:

* A generator turns features into one foreground prediction map per class, ``M in [0, 1]^{K x h x w}`` (sigmoid
  output); training takes the ground-truth class's map ``M*`` and its complement ``1 - M*``.
* The activation map constraint scores the whole image and the background ``F_bg = F * (1 - M*)`` with the same
  classifier; with ``y_c`` the ground-truth class's logit, ``S = ReLU(y_c(F))`` and ``S_bg = ReLU(y_c(F_bg))``, and
  the background activation suppression loss is ``L_BAS = S_bg / S`` (Eq. 3), averaged over the batch. The
  background branch is frozen: in the authors' code it is a fresh copy of the last stage and the classifier made at
  every step, and the features entering it are cut from the graph, so its loss reaches the mask (and, through the
  generator's input, the layers below the generator), never the classifier nor the features it masks.
* The denominator ``S`` is detached (Fig. 2); ratios ``>= 1`` are "marked as a constant" (Sec. 4; the authors' code
  writes 0 there).
* Area constraint ``L_AC = mean_{i,j} M*(i, j)`` per image, averaged over the batch; the authors add it to the
  ratio in one function, the area with weight 1.2 in their ResNet-50 recipe.
* Foreground region guidance ``L_FRG``: the classification loss of the foreground (weight 0.5 in the authors'
  ResNet-50 recipe, 0 for VGG); ``L_CLS`` is the classification loss on ``F``.
* Inference: the generator's map of the ground-truth class (ImageNet) or the mean of the top-k predicted classes'
  maps (CUB, all classes for ResNet-50), scored by the authors at one fixed threshold.

What ``wsol`` does, per difference with the authors' code (docs/methods.md §16 has the table):

* Defaults (the layout the study's ``bas`` row ran with, kept so that its results keep their meaning): the generator
  (``conv3x3 -> ReLU -> conv1x1 -> sigmoid``) reads the final features, the classifier is the linear CAM head, the
  background branch is that head frozen on ``F * (1 - M*)`` *with* the gradient into ``F`` (from scratch this pushes
  the ground-truth logit down and can collapse the classifier), weights 1/1/1.
* ``detach_background=True``: the background branch sees ``F.detach() * (1 - M*)``, as the authors'.
* ``mask_stage="penultimate"``, ``generator="one_conv"``, ``class_head="conv"`` (see
  :class:`~wsol.models.bas_net.BASNet`): the authors' layout. The background then passes through the backbone's
  last stage and the conv head, both with their parameters cut from the graph and their BatchNorm running
  statistics left untouched (batch statistics in training, as the authors' per-step copies use), and the foreground
  term is the GAP of the head's class maps times ``M*`` average-pooled to their resolution.
* A clamped ratio takes the value ``ratio_clamp`` (not the authors' 0): the gradient is zero either way, and the
  logged ``bas`` term then reads as a saturated ratio.
* ``inference_topk = 1`` scores each class's own map (the ground-truth class's in the GT-known evaluation);
  ``k > 1`` gives every class channel the mean map of the k most probable classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.bas_net import (
    BASNet,
    ClassHeadKind,
    ForegroundGenerator,
    GeneratorKind,
    MaskStage,
    ReLUConvClassifier,
    topk_mean_map,
)

__all__ = [
    "BAS",
    "ForegroundGenerator",
    "area_loss",
    "bas_ratio_loss",
    "frozen_forward",
    "gt_activation",
    "topk_mean_map",
]


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


def frozen_forward(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` with the module's parameters cut from the graph and its buffers copied.

    The gradient reaches ``x`` but none of the parameters, and BatchNorm's running statistics (updated in training
    mode) are updated in the copies only: the authors' per-step frozen copy of a branch, without copying weights.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    return torch.func.functional_call(module, {**params, **buffers}, (x,))


@register_method
class BAS(WSOLModule):
    """A classifier plus a foreground-map generator trained by suppressing the classifier's background activation.

    For features ``F`` and ground-truth class ``c``: the generator's map ``M* = G(F')_c`` (``F'`` is ``F``, or the
    features before the last stage with ``mask_stage="penultimate"``), the logits ``y = f2(F)``, the foreground logits
    ``y_fg`` and the background logits ``y_bg = f2'(F' * (1 - M*))``, where ``f2'`` is the frozen branch (the head, or
    the last stage and the head). The training loss is

        ``L = CE(y, c) + frg_weight CE(y_fg, c) + bas_weight mean(S_bg / S) + area_weight mean(M*)``

    with ``S = ReLU(y_c)`` (detached by default) and ``S_bg = ReLU(y_bg,c)`` (see the module docstring for the
    paper, the authors' code and the choices made), logged as ``cls``, ``frg``, ``bas`` and ``area``. ``y_fg`` is
    ``f2(F * M*)`` for the linear head and the GAP of the conv head's maps times ``M*`` for the conv head (``M*``
    average-pooled to ``F``'s resolution when it is finer). The logits are the head's on ``F``; the localization maps
    are the generator's, of every class (``inference_topk = 1``) or the mean of the top-k predicted classes' maps in
    every channel. The generator trains at ``lr * head_lr_mult``.

    The defaults are the layout the small-data study's ``bas`` row ran with; the authors' code corresponds to
    ``detach_background=True, mask_stage="penultimate", generator="one_conv", class_head="conv", area_weight=1.2,
    frg_weight=0.5`` (the study's ``bas_authors`` row keeps the linear head: from scratch the ReLU'd conv head dies).

    Args:
        bas_weight: weight of ``L_BAS``.
        area_weight: weight of the area constraint ``L_AC`` (1.2 in the authors' ResNet-50 recipe).
        frg_weight: weight of the foreground region guidance ``L_FRG`` (0.5 in the authors' ResNet-50 recipe).
        detach_denominator: detach the whole-image activation ``S`` in ``L_BAS`` (the paper's Fig. 2).
        ratio_clamp: ratios at or above it become this constant (no gradient); the paper's 1; None disables.
        generator_channels: width of the two-layer generator's 3x3 convolution; None for ``min(C, 512)`` with ``C``
            the channels it reads.
        inference_topk: number of most probable classes whose maps are averaged at inference; 1 keeps each class's
            own map.
        warmup_epochs_loc: epochs of classification-only training before the generator's losses switch on (0: from
            the first step, as in the paper, whose backbone is pretrained).
        detach_background: cut the gradient of the features entering the background branch (the authors' code):
            ``L_BAS`` then reaches the generator and what lies below its input, never the masked features.
        mask_stage: ``"last"`` or ``"penultimate"`` (the authors': the generator and the background branch start
            before the backbone's last stage, which the background then passes through frozen).
        generator: ``"two_conv"`` or ``"one_conv"`` (the authors': one 3x3 convolution plus sigmoid).
        class_head: ``"linear"`` (the CAM head) or ``"conv"`` (the authors': conv3x3-ReLU-conv3x3-ReLU-conv1x1-ReLU).
        class_head_channels: width of the conv head; None for half the backbone's channels.
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
        detach_background: bool = False,
        mask_stage: MaskStage = "last",
        generator: GeneratorKind = "two_conv",
        class_head: ClassHeadKind = "linear",
        class_head_channels: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("bas_weight", bas_weight), ("area_weight", area_weight), ("frg_weight", frg_weight)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name, value in (("detach_denominator", detach_denominator), ("detach_background", detach_background)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        if ratio_clamp is not None and (
            isinstance(ratio_clamp, bool) or not isinstance(ratio_clamp, int | float) or ratio_clamp <= 0
        ):
            raise ValueError(f"ratio_clamp must be > 0 or None, got {ratio_clamp!r}")
        for name, value in (("generator_channels", generator_channels), ("class_head_channels", class_head_channels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if isinstance(inference_topk, bool) or not isinstance(inference_topk, int) or inference_topk < 1:
            raise ValueError(f"inference_topk must be a positive int, got {inference_topk!r}")
        if isinstance(warmup_epochs_loc, bool) or not isinstance(warmup_epochs_loc, int) or warmup_epochs_loc < 0:
            raise ValueError(f"warmup_epochs_loc must be an int >= 0, got {warmup_epochs_loc!r}")
        for name, value, allowed in (
            ("mask_stage", mask_stage, ("last", "penultimate")),
            ("generator", generator, ("two_conv", "one_conv")),
            ("class_head", class_head, ("linear", "conv")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by BAS: the foreground map is chosen by one class per image")
        if kwargs.get("multilabel"):
            raise ValueError("multilabel is not supported by BAS: the foreground map is chosen by one class per image")
        super().__init__(**kwargs)

    def build_network(self, backbone: nn.Module) -> BASNet:
        hp = self.hparams
        return BASNet(
            backbone,
            hp.num_classes,
            hp.generator_channels,
            hp.inference_topk,
            mask_stage=hp.get("mask_stage", "last"),
            generator=hp.get("generator", "two_conv"),
            class_head=hp.get("class_head", "linear"),
            class_head_channels=hp.get("class_head_channels"),
        )

    # ------------------------------------------------------------------------------------- losses
    def background_logits(self, background: Tensor) -> Tensor:
        """Logits of the frozen branch on the masked background (its parameters cut from the graph): the head, after
        the backbone's last stage when the mask is applied before it."""
        if self.net.mask_stage == "penultimate":
            background = frozen_forward(self.net.last_stage(), background)
        return frozen_forward(self.head, background)

    def foreground_logits(self, features: Tensor, mask: Tensor) -> Tensor:
        """Logits of the foreground: ``head(F * M*)`` for the linear head, ``GAP(maps(F) * M*)`` for the conv head;
        a mask finer than ``F`` is average-pooled to its resolution first."""
        if mask.shape[-2:] != features.shape[-2:]:
            mask = F.adaptive_avg_pool2d(mask, features.shape[-2:])
        if isinstance(self.head, ReLUConvClassifier):
            return (self.head.class_maps(features) * mask).mean(dim=(2, 3))
        return self.head(features * mask)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_CLS + frg_weight L_FRG + bas_weight L_BAS + area_weight L_AC``, logged as cls, frg, bas, area."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        labels = targets.argmax(dim=1)
        mask_input, features = self.net.stages(images)
        logits = self.head(features)
        cls = self.classification_loss(logits, targets)
        active = self.localization_active()
        # During the warm-up the generator's terms are only monitored: no graph is kept for them.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            rows = torch.arange(features.shape[0], device=features.device)
            foreground = self.net.generator(mask_input)[rows, labels]  # M*: the ground-truth class's map (B, h, w)
            mask = foreground[:, None]
            frg = self.classification_loss(self.foreground_logits(features, mask), targets)
            kept = mask_input.detach() if hp.get("detach_background", False) else mask_input
            bas = bas_ratio_loss(
                gt_activation(self.background_logits(kept * (1.0 - mask)), labels),
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
