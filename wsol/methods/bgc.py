"""BGC: bridging the gap between classification and localization (Kim et al., CVPR 2022, arXiv 2204.00220).

The paper's starting point: the CAM of class ``c`` at position ``x`` factorises as

    M_c(x) = w_c . f(x) = ||w_c|| * ||f(x)|| * cos(f(x), w_c),

i.e. a constant, the *normalised feature map* ``F(x) = ||f(x)|| / max_x' ||f(x')||`` (up to that max) and the
*similarity map* ``S_c(x) = cos(f(x), w_c)``. A classifier trained on GAP features alone has no reason to align
``f(x)`` with ``w_c`` at every object position, so ``F`` often covers the object while ``S_c`` (and so the CAM)
only peaks on its most discriminative part. BGC adds losses that make the two maps agree (feature direction
alignment) and spread the activation over the object (consistency with attentive dropout).

The first version here was written from the paper alone; the authors' code (ejkim47/bridging-gap-wsol, read for
understanding, not copied: its licence is non-commercial) differs from it in five places, each now an option whose
default keeps the first version (the small-data study's ``bgc`` row ran with it) and whose other value follows the
authors (the study's ``bgc_authors`` row sets them all; docs/methods.md §15 has the table):

* ``consistency="drop"``: after the first block of the last stage, the positions whose channel mean exceeds
  ``tau_drop`` of its maximum are zeroed, each with probability ``drop_prob``; the erased tensor passes through the
  remaining blocks again (shared weights) and the loss is the L1 distance between the final features of both passes
  (:func:`attentive_drop_mask`, :func:`two_pass_consistency_loss`).
* ``consistency_warmup=False``: the consistency term trains from the first epoch; only the similarity and norm terms
  wait for the warm-up.
* ``norm_scaling="minmax"``: feature norms are min-max normalised per image before thresholding and in the norm
  term (max-normalised norms of a map with a high minimum leave the background region empty).
* ``norm_regions="sign"`` (``"sign_max"``): the norm term's regions are where the cosine between the feature and the
  ground-truth class's weight (the largest cosine over classes) is positive / negative.
* Weights: the authors' ResNet-50 recipe uses ``lambda_sim`` 0.5, ``lambda_norm`` 0.05, ``lambda_cons`` 2.0, and
  similarity regions ``tau_fg`` 0.4 / ``tau_bg`` 0.2 on the normalised norm map.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.stages import split_inside_last_stage

__all__ = [
    "BGC",
    "attentive_drop_mask",
    "dropout_consistency_loss",
    "masked_mean",
    "max_class_similarity",
    "norm_loss",
    "normalized_feature_map",
    "region_masks",
    "sign_regions",
    "similarity_loss",
    "similarity_map",
    "two_pass_consistency_loss",
]

_EPS = 1e-12


def normalized_feature_map(features: Tensor, scaling: Literal["max", "minmax"] = "max", eps: float = _EPS) -> Tensor:
    """The feature norms ``n(x) = ||f(x)||_2`` of ``(B, C, h, w)`` features scaled per image to ``(B, h, w)`` in [0, 1].

    ``"max"``: ``n(x) / max n``; ``"minmax"``: ``(n(x) - min n) / (max n - min n)`` (the authors' code). The gradient
    flows through the norms and through the min and max. An all-zero map, or with ``"minmax"`` a constant one, gives
    0 everywhere (the divisor is clamped at ``eps``).
    """
    norms = features.norm(dim=1)
    if scaling == "max":
        return norms / norms.amax(dim=(1, 2), keepdim=True).clamp_min(eps)
    if scaling == "minmax":
        low = norms.amin(dim=(1, 2), keepdim=True)
        return (norms - low) / (norms.amax(dim=(1, 2), keepdim=True) - low).clamp_min(eps)
    raise ValueError(f"scaling must be 'max' or 'minmax', got {scaling!r}")


def similarity_map(features: Tensor, weights: Tensor, eps: float = 1e-8) -> Tensor:
    """``S(x) = cos(f(x), w)`` per image: features ``(B, C, h, w)``, one class weight per image ``(B, C)``.

    Returns ``(B, h, w)`` in [-1, 1]; a zero feature vector has cosine 0 (``F.cosine_similarity``'s ``eps``).
    """
    return F.cosine_similarity(features, weights[:, :, None, None].to(features.dtype), dim=1, eps=eps)


def max_class_similarity(features: Tensor, weights: Tensor) -> Tensor:
    """``max_k cos(f(x), w_k)`` per position: features ``(B, C, h, w)`` against every class row of ``weights (K, C)``.

    Returns ``(B, h, w)`` in [-1, 1]; a zero feature vector or weight row has cosine 0.
    """
    unit_f = F.normalize(features, dim=1)
    unit_w = F.normalize(weights.to(features.dtype), dim=1)
    return torch.einsum("bchw,kc->bkhw", unit_f, unit_w).amax(dim=1)


def sign_regions(similarity: Tensor) -> tuple[Tensor, Tensor]:
    """Foreground ``S > 0`` and background ``S < 0`` boolean masks of a ``(B, h, w)`` cosine map, without gradient
    (positions at exactly 0 belong to neither)."""
    similarity = similarity.detach()
    return similarity > 0, similarity < 0


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


def attentive_drop_mask(
    features: Tensor, threshold: float, prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """The keep mask ``(B, 1, h, w)`` of attentive dropout on ``(B, C, h, w)`` features (1 keep, 0 drop).

    A position is a drop candidate where its channel mean exceeds ``threshold`` times the image's largest channel
    mean; each candidate is dropped with probability ``prob`` (independent draws, ``U < prob`` with ``U`` uniform in
    [0, 1): ``prob = 1`` drops every candidate, ``prob = 0`` none). Computed without gradient.

    Args:
        features: the features to erase.
        threshold: fraction of the maximum channel mean, in (0, 1].
        prob: drop probability of a candidate, in [0, 1].
        generator: generator of the draws on the features' device; None uses torch's global RNG (reseeded before
            every training step, :meth:`~wsol.methods.base.WSOLModule.seed_step`).
    """
    mean = features.detach().mean(dim=1, keepdim=True)
    candidate = mean > threshold * mean.amax(dim=(2, 3), keepdim=True)
    draw = torch.rand(mean.shape, generator=generator, device=mean.device) < prob
    return (~(candidate & draw)).to(features.dtype)


def two_pass_consistency_loss(before: Tensor, rest: nn.Module, keep: Tensor, features: Tensor | None = None) -> Tensor:
    """The authors' consistency term: ``mean |rest(before) - rest(before * keep)|`` over every element.

    Args:
        before: features at the drop point ``(B, C, h, w)`` (after the first block of the last stage).
        rest: the remaining blocks, run on the erased tensor with the same weights as on ``before``.
        keep: the :func:`attentive_drop_mask` ``(B, 1, h, w)``.
        features: ``rest(before)`` when already computed (the training pass's final features).
    """
    if features is None:
        features = rest(before)
    return F.l1_loss(features, rest(before * keep))


@register_method
class BGC(WSOLModule):
    """CAM trained with feature direction alignment and consistency under attentive dropout.

    The network, the logits and the inference maps are CAM's: the map of class ``c`` is ``w_c . f(x) + b_c``, as
    in the paper, which changes only training (the state dict is CAM's). With features ``f`` (the backbone output),
    ``c`` the ground-truth class and ``w_c`` its classifier row, each training batch minimises

        L = L_cls + [epoch >= warmup_epochs_loc] * (lambda_sim L_sim + lambda_norm L_norm)
            + [epoch >= warmup_epochs_loc or not consistency_warmup] * lambda_cons L_cons

    * ``L_sim`` (:func:`similarity_loss`) on ``S = cos(f, w_c)`` over the regions of the normalised feature map
      ``F`` (:func:`normalized_feature_map`, ``norm_scaling``): foreground ``F > tau_fg``, background ``F < tau_bg``;
    * ``L_norm`` (:func:`norm_loss`) on ``F`` over regions of the similarity map: ``norm_regions="threshold"``, ``S``
      min-max normalised per image to [0, 1] and the same two thresholds; ``"sign"``, ``S > 0`` / ``S < 0``;
      ``"sign_max"``, the sign of the largest cosine over classes;
    * ``L_cons``: ``consistency="norm"``, :func:`dropout_consistency_loss` (features dropped where ``F > tau_drop``,
      L1 between the normalised feature maps with and without them); ``"drop"``, the authors' two passes
      (:func:`attentive_drop_mask` after the first block of the last stage, or before a last stage of one block,
      then :func:`two_pass_consistency_loss`).

    Each map's regions steer the other map, so that jointly ``F`` and ``S`` (and hence the CAM) come to cover the
    same object. The regions and the drop mask carry no gradient; ``L_sim`` reaches both the backbone and ``w_c``.
    Terms still waiting for the warm-up are computed (without gradient) and logged, so that the alignment can be
    watched before it is trained.

    The defaults are the first reading of the paper (the study's ``bgc`` row); the module docstring lists the
    options that follow the authors' code. Choices kept either way: the regions' means are taken per image and
    averaged over the images whose region is not empty (the authors count an empty region as 0), and the loss forms
    ``1 - S`` / ``1 + S`` and ``1 - F`` / ``F`` differ from the authors' ``mean_bg - mean_fg`` by constants only.

    Args:
        lambda_sim: weight of ``L_sim`` (the authors' ResNet-50 recipe: 0.5).
        lambda_norm: weight of ``L_norm`` (0.05).
        lambda_cons: weight of ``L_cons`` (2.0).
        tau_fg: foreground threshold on the [0, 1] maps (0.4).
        tau_bg: background threshold on the [0, 1] maps, at most ``tau_fg`` (0.2).
        tau_drop: attentive-dropout threshold, in (0, 1] (1 drops nothing); on ``F`` with ``consistency="norm"``, on
            the channel mean's fraction of its maximum with ``"drop"`` (the authors' 0.8).
        warmup_epochs_loc: epochs of classification-only training before the localization losses switch on
            (not the base's ``warmup_epochs``, which is the learning-rate warm-up).
        consistency: ``"norm"`` or ``"drop"`` (the authors'), see above.
        drop_prob: probability of dropping each candidate position with ``consistency="drop"`` (the authors' 0.25).
        consistency_warmup: whether ``L_cons`` waits for the warm-up too (False: the authors').
        norm_scaling: ``"max"`` or ``"minmax"`` (the authors'), the scaling of the feature norms.
        norm_regions: ``"threshold"``, ``"sign"`` (the authors' ImageNet choice) or ``"sign_max"`` (their CUB one).
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
        consistency: Literal["norm", "drop"] = "norm",
        drop_prob: float = 0.25,
        consistency_warmup: bool = True,
        norm_scaling: Literal["max", "minmax"] = "max",
        norm_regions: Literal["threshold", "sign", "sign_max"] = "threshold",
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
        if isinstance(drop_prob, bool) or not isinstance(drop_prob, int | float) or not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be a number in [0, 1], got {drop_prob!r}")
        if not isinstance(consistency_warmup, bool):
            raise ValueError(f"consistency_warmup must be a bool, got {consistency_warmup!r}")
        for name, value, allowed in (
            ("consistency", consistency, ("norm", "drop")),
            ("norm_scaling", norm_scaling, ("max", "minmax")),
            ("norm_regions", norm_regions, ("threshold", "sign", "sign_max")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by BGC: the localization losses follow one class per image")
        if kwargs.get("multilabel"):
            raise ValueError("multilabel is not supported by BGC: the localization losses follow one class per image")
        super().__init__(**kwargs)
        if consistency == "drop":
            split_inside_last_stage(self.backbone)  # fail now, not at the first step, on a backbone it cannot cut

    def localization_active(self) -> bool:
        """Whether the localization losses are trained in the current epoch (after the warm-up)."""
        return self.current_epoch >= self.hparams.warmup_epochs_loc

    def consistency_active(self) -> bool:
        """Whether ``L_cons`` is trained in the current epoch (always, with ``consistency_warmup=False``)."""
        return self.localization_active() or not self.hparams.get("consistency_warmup", True)

    def alignment_terms(self, features: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L_sim`` and ``L_norm`` of features ``(B, C, h, w)`` for the classes ``labels`` ``(B,)``."""
        hp = self.hparams
        weights = self.head.weight.flatten(1)
        norm_map = normalized_feature_map(features, hp.get("norm_scaling", "max"))
        similarity = similarity_map(features, weights[labels])
        regions = hp.get("norm_regions", "threshold")
        if regions == "sign":
            fg_s, bg_s = sign_regions(similarity)
        elif regions == "sign_max":
            fg_s, bg_s = sign_regions(max_class_similarity(features, weights))
        else:
            s_lo = similarity.detach().amin(dim=(1, 2), keepdim=True)
            s_hi = similarity.detach().amax(dim=(1, 2), keepdim=True)
            fg_s, bg_s = region_masks(
                (similarity.detach() - s_lo) / (s_hi - s_lo).clamp_min(_EPS), hp.tau_fg, hp.tau_bg
            )
        fg_f, bg_f = region_masks(norm_map, hp.tau_fg, hp.tau_bg)
        return {"sim": similarity_loss(similarity, fg_f, bg_f), "norm": norm_loss(norm_map, fg_s, bg_s)}

    def localization_terms(self, features: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L_sim``, ``L_norm`` and the one-pass ``L_cons`` (:func:`dropout_consistency_loss`) of features."""
        return {
            **self.alignment_terms(features, labels),
            "cons": dropout_consistency_loss(features, self.hparams.tau_drop),
        }

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_cls`` plus the weighted localization terms that are active; every term is logged by name."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        labels = targets.argmax(dim=1)
        two_pass = hp.get("consistency", "norm") == "drop"
        if two_pass:
            first, rest = split_inside_last_stage(self.backbone)
            before = first(images)
            features = rest(before)
        else:
            features = self.features(images)
        cls = self.classification_loss(self.head(features), targets)
        active, cons_active = self.localization_active(), self.consistency_active()
        # Terms waiting for the warm-up are only monitored: no graph is kept for them.
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            terms = self.alignment_terms(features, labels)
        with torch.set_grad_enabled(cons_active and torch.is_grad_enabled()):
            if two_pass:
                keep = attentive_drop_mask(before, hp.tau_drop, hp.drop_prob)
                terms["cons"] = two_pass_consistency_loss(before, rest, keep, features)
            else:
                terms["cons"] = dropout_consistency_loss(features, hp.tau_drop)
        total = cls
        if active:
            total = total + hp.lambda_sim * terms["sim"] + hp.lambda_norm * terms["norm"]
        if cons_active:
            total = total + hp.lambda_cons * terms["cons"]
        return total, {"cls": cls, **terms}
