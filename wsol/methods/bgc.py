"""BGC: bridging the gap between classification and localization (Kim et al., CVPR 2022, arXiv 2204.00220).

The paper's starting point: the CAM of class ``c`` at position ``x`` factorises as

    M_c(x) = w_c . f(x) = ||w_c|| * ||f(x)|| * cos(f(x), w_c),

i.e. a constant, the *normalised feature map* ``F(x) = ||f(x)|| / max_x' ||f(x')||`` (up to that max) and the
*similarity map* ``S_c(x) = cos(f(x), w_c)``. A classifier trained on GAP features alone has no reason to align
``f(x)`` with ``w_c`` at every object position, so ``F`` often covers the object while ``S_c`` (and so the CAM)
only peaks on its most discriminative part. BGC adds losses that make the two maps agree (feature direction
alignment) and spread the activation over the object (consistency with attentive dropout).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method

__all__ = [
    "BGC",
    "dropout_consistency_loss",
    "masked_mean",
    "norm_loss",
    "normalized_feature_map",
    "region_masks",
    "similarity_loss",
    "similarity_map",
]

_EPS = 1e-12


def normalized_feature_map(features: Tensor, eps: float = _EPS) -> Tensor:
    """``F(x) = ||f(x)||_2 / max_x' ||f(x')||_2`` per image: ``(B, C, h, w)`` features to ``(B, h, w)`` in [0, 1].

    An all-zero feature map gives ``F = 0`` (the maximum is clamped at ``eps``).
    """
    norms = features.norm(dim=1)
    return norms / norms.amax(dim=(1, 2), keepdim=True).clamp_min(eps)


def similarity_map(features: Tensor, weights: Tensor, eps: float = 1e-8) -> Tensor:
    """``S(x) = cos(f(x), w)`` per image: features ``(B, C, h, w)``, one class weight per image ``(B, C)``.

    Returns ``(B, h, w)`` in [-1, 1]; a zero feature vector has cosine 0 (``F.cosine_similarity``'s ``eps``).
    """
    return F.cosine_similarity(features, weights[:, :, None, None].to(features.dtype), dim=1, eps=eps)


def region_masks(score: Tensor, tau_fg: float, tau_bg: float) -> tuple[Tensor, Tensor]:
    """Foreground ``score > tau_fg`` and background ``score < tau_bg`` boolean masks of ``(B, h, w)`` maps in [0, 1].

    Computed without gradient: the regions are targets, not something to optimise. Positions in between belong
    to neither region.
    """
    score = score.detach()
    return score > tau_fg, score < tau_bg


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over each image's ``mask``, then over the images whose mask is not empty.

    Args:
        values: ``(B, h, w)`` values.
        mask: ``(B, h, w)`` boolean region.

    Returns:
        A scalar; 0 (still attached to ``values``' graph) when every image's region is empty.
    """
    mask = mask.to(values.dtype)
    count = mask.sum(dim=(1, 2))
    per_image = (values * mask).sum(dim=(1, 2)) / count.clamp_min(1.0)
    valid = (count > 0).to(values.dtype)
    return (per_image * valid).sum() / valid.sum().clamp_min(1.0)


def similarity_loss(similarity: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
    """Feature direction alignment: raise ``cos(f, w_c)`` in the foreground, lower it in the background.

    ``L_sim = mean_{x in fg} (1 - S(x)) + mean_{x in bg} (1 + S(x))``, each mean taken per image and averaged over
    the images whose region is not empty (:func:`masked_mean`). It is 0 when the foreground features point along
    ``w_c`` and the background ones against it; the gradient is that of ``-mean_fg S + mean_bg S``.
    """
    return masked_mean(1.0 - similarity, fg) + masked_mean(1.0 + similarity, bg)


def norm_loss(norm_map: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
    """Feature-norm term: raise ``F`` in the foreground, lower it in the background.

    ``L_norm = mean_{x in fg} (1 - F(x)) + mean_{x in bg} F(x)`` with ``F`` the normalised feature map (in [0, 1]).
    """
    return masked_mean(1.0 - norm_map, fg) + masked_mean(norm_map, bg)


def dropout_consistency_loss(features: Tensor, tau_drop: float, eps: float = _EPS) -> Tensor:
    """Consistency under attentive dropout of the most activated positions.

    The positions where ``F(x) > tau_drop`` (the most discriminative part, found without gradient) are dropped
    from the features; the normalised feature map of what remains, ``F_drop(x) = ||f(x)|| / max_{x' kept}
    ||f(x')||``, must equal the full one there:

        L_cons = mean_{x kept} |F(x) - F_drop(x)|,

    per image, averaged over images that keep at least one position. It vanishes when the strongest kept position is
    as strong as the dropped peak (or nothing kept is active), so minimising it lowers the peak and raises the rest
    of the object: the activation is spread instead of concentrated on one part.
    """
    norms = features.norm(dim=1)
    peak = norms.amax(dim=(1, 2), keepdim=True).clamp_min(eps)
    full = norms / peak
    keep = full.detach() <= tau_drop
    kept = norms * keep.to(norms.dtype)
    dropped = kept / kept.amax(dim=(1, 2), keepdim=True).clamp_min(eps)
    return masked_mean((full - dropped).abs(), keep)


@register_method
class BGC(WSOLModule):
    """CAM trained with feature direction alignment and consistency under attentive dropout.

    The network, the logits and the inference maps are CAM's: the map of class ``c`` is ``w_c . f(x) + b_c``, as
    in the paper, which changes only training (the state dict is CAM's). With features ``f`` (the backbone output),
    ``c`` the ground-truth class and ``w_c`` its classifier row, each training batch minimises

        L = L_cls + [epoch >= warmup_epochs_loc] * (lambda_sim L_sim + lambda_norm L_norm + lambda_cons L_cons)

    * ``L_sim`` (:func:`similarity_loss`) on ``S = cos(f, w_c)`` over the regions of the normalised feature map
      ``F``: foreground ``F > tau_fg``, background ``F < tau_bg``;
    * ``L_norm`` (:func:`norm_loss`) on ``F`` over the regions of the similarity map, min-max normalised per image
      to [0, 1] before the same two thresholds;
    * ``L_cons`` (:func:`dropout_consistency_loss`): features dropped where ``F > tau_drop``, L1 between the
      normalised feature maps with and without the dropped positions.

    Each map's regions steer the other map, so that jointly ``F`` and ``S`` (and hence the CAM) come to cover the
    same object. The regions and the drop mask carry no gradient; ``L_sim`` reaches both the backbone and ``w_c``.
    During the classification-only warm-up the three terms are still computed (without gradient) and logged, so
    that the alignment can be watched before it is trained.

    Choices made here, where the paper's exact form was not available to check: the loss forms above (linear in
    ``S`` and ``F``); the maps are thresholded on [0, 1] scales (``F`` by its maximum, ``S`` by per-image min-max);
    one ``(tau_fg, tau_bg)`` pair serves both region definitions; region means are taken per image; the attentive
    dropout acts on the final feature map (no second forward pass) and is applied at every step; the default
    weights and thresholds are reasonable values, not the paper's tuned ones. The warm-up default, 20 epochs of
    classification only (of 70), is the paper's schedule. Hyper-parameter names follow the roles above.

    Args:
        lambda_sim: weight of ``L_sim``.
        lambda_norm: weight of ``L_norm``.
        lambda_cons: weight of ``L_cons``.
        tau_fg: foreground threshold on the [0, 1] maps.
        tau_bg: background threshold on the [0, 1] maps, at most ``tau_fg``.
        tau_drop: attentive-dropout threshold on ``F``, in (0, 1] (1 drops nothing).
        warmup_epochs_loc: epochs of classification-only training before the localization losses switch on
            (not the base's ``warmup_epochs``, which is the learning-rate warm-up).
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, ...). ``mixer`` and
            ``multilabel`` are not supported: the losses follow one class per image.
    """

    def __init__(
        self,
        lambda_sim: float = 1.0,
        lambda_norm: float = 1.0,
        lambda_cons: float = 1.0,
        tau_fg: float = 0.5,
        tau_bg: float = 0.2,
        tau_drop: float = 0.8,
        warmup_epochs_loc: int = 20,
        **kwargs: Any,
    ) -> None:
        for name, value in (("lambda_sim", lambda_sim), ("lambda_norm", lambda_norm), ("lambda_cons", lambda_cons)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= tau_fg <= 1.0:
            raise ValueError(f"tau_fg must be in [0, 1], got {tau_fg}")
        if not 0.0 <= tau_bg <= tau_fg:
            raise ValueError(f"tau_bg must be in [0, tau_fg={tau_fg}], got {tau_bg}")
        if not 0.0 < tau_drop <= 1.0:
            raise ValueError(f"tau_drop must be in (0, 1], got {tau_drop}")
        if isinstance(warmup_epochs_loc, bool) or not isinstance(warmup_epochs_loc, int) or warmup_epochs_loc < 0:
            raise ValueError(f"warmup_epochs_loc must be an int >= 0, got {warmup_epochs_loc!r}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by BGC: the localization losses follow one class per image")
        if kwargs.get("multilabel"):
            raise ValueError("multilabel is not supported by BGC: the localization losses follow one class per image")
        super().__init__(**kwargs)

    def localization_active(self) -> bool:
        """Whether the localization losses are trained in the current epoch (after the warm-up)."""
        return self.current_epoch >= self.hparams.warmup_epochs_loc

    def localization_terms(self, features: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L_sim``, ``L_norm`` and ``L_cons`` of features ``(B, C, h, w)`` for the classes ``labels`` ``(B,)``."""
        hp = self.hparams
        norm_map = normalized_feature_map(features)
        similarity = similarity_map(features, self.head.weight.flatten(1)[labels])
        s_lo = similarity.detach().amin(dim=(1, 2), keepdim=True)
        s_hi = similarity.detach().amax(dim=(1, 2), keepdim=True)
        similarity_01 = (similarity.detach() - s_lo) / (s_hi - s_lo).clamp_min(_EPS)
        fg_f, bg_f = region_masks(norm_map, hp.tau_fg, hp.tau_bg)
        fg_s, bg_s = region_masks(similarity_01, hp.tau_fg, hp.tau_bg)
        return {
            "sim": similarity_loss(similarity, fg_f, bg_f),
            "norm": norm_loss(norm_map, fg_s, bg_s),
            "cons": dropout_consistency_loss(features, hp.tau_drop),
        }

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_cls`` plus, after the warm-up, the weighted localization terms; every term is logged by name."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        features = self.features(images)
        cls = self.classification_loss(self.head(features), targets)
        active = self.localization_active()
        # During the warm-up the terms are only monitored: no graph is kept for them.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            terms = self.localization_terms(features, targets.argmax(dim=1))
        total = cls
        if active:
            total = cls + hp.lambda_sim * terms["sim"] + hp.lambda_norm * terms["norm"] + hp.lambda_cons * terms["cons"]
        return total, {"cls": cls, **terms}
