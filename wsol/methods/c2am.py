"""C2AM: contrastive learning of a class-agnostic activation map (Xie et al., CVPR 2022, arXiv 2203.13505).

Written from the paper. An activation head on the trunk's features gives one foreground map ``A`` per image (no
class); ``A`` and ``1 - A`` pool the features into a foreground and a background representation of each image, and
a cross-image contrast shapes ``A``: foregrounds of different images attract, backgrounds attract, and every
foreground repels every background. Nothing in the contrast reads a label. Here it trains jointly with the CAM
head's classification loss, so the row still classifies (the paper trains the contrast alone). docs/methods.md §20.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.c2am_net import C2AMNet, border_excess

__all__ = [
    "C2AM",
    "contrastive_terms",
    "cosine_matrix",
    "negative_loss",
    "positive_loss",
    "rank_weights",
    "region_features",
]

_EPS = 5e-4  # similarities are clamped to [eps, 1] in log(s) and to [0, 1 - eps] in log(1 - s)


def region_features(features: Tensor, activation: Tensor) -> tuple[Tensor, Tensor]:
    """Foreground and background representations ``(B, C)``: the features ``(B, C, h, w)`` weighted by the activation
    map ``A`` ``(B, h, w)`` and by ``1 - A``, averaged over the ``h w`` positions (the paper's ``A Z^T`` and
    ``(1 - A) Z^T`` divided by ``h w``, which no cosine sees)."""
    if activation.shape != features.shape[:1] + features.shape[2:]:
        raise ValueError(f"activation {tuple(activation.shape)} does not match features {tuple(features.shape)}")
    area = features.shape[2] * features.shape[3]
    fg = torch.einsum("bchw,bhw->bc", features, activation) / area
    bg = torch.einsum("bchw,bhw->bc", features, 1.0 - activation) / area
    return fg, bg


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(n, m)`` cosine similarities between the rows of ``a`` ``(n, C)`` and ``b`` ``(m, C)``; a zero row has
    similarity 0 with everything."""
    return F.normalize(a, dim=1, eps=1e-12) @ F.normalize(b, dim=1, eps=1e-12).T


def rank_weights(similarity: Tensor, alpha: float) -> Tensor:
    """The paper's rank weights of an ``(n, n)`` similarity matrix among positives: ``w_ij = exp(-alpha r_ij)``, with
    ``r_ij`` the rank of ``s_ij`` among row ``i``'s off-diagonal entries in descending order (0 for the most similar;
    ties keep column order). Diagonal entries are 0. Without gradient."""
    n = similarity.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=similarity.device)
    masked = similarity.detach().masked_fill(~off, -math.inf)
    order = torch.argsort(masked, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=order.device).expand(n, n))
    return torch.exp(-alpha * ranks.to(similarity.dtype)) * off.to(similarity.dtype)


def positive_loss(features: Tensor, alpha: float, eps: float = _EPS) -> Tensor:
    """Pull term over representations ``(n, C)`` of the same kind from ``n`` images (foregrounds, or backgrounds):

        L_pos = -1 / (n (n - 1)) * sum_{i != j} w_ij log clamp(s_ij, eps, 1)

    with ``s`` the cosine similarity and ``w`` :func:`rank_weights` (``alpha = 0`` weighs every pair 1). It is 0 when
    all ``n`` representations point the same way, its minimum; 0 for fewer than two images.
    """
    n = features.shape[0]
    if n < 2:
        return features.sum() * 0.0
    similarity = cosine_matrix(features, features)
    weights = rank_weights(similarity, alpha)
    return -(weights * similarity.clamp(eps, 1.0).log()).sum() / (n * (n - 1))


def negative_loss(foreground: Tensor, background: Tensor, eps: float = _EPS) -> Tensor:
    """Push term between every foreground ``(n, C)`` and every background ``(n, C)``, the same image's included:

        L_neg = -1 / n^2 * sum_{i, j} log(1 - clamp(s(f_i, b_j), 0, 1 - eps))

    0 when every foreground is orthogonal to (or, for features of any sign, points away from) every background.
    """
    similarity = cosine_matrix(foreground, background).clamp(0.0, 1.0 - eps)
    return -torch.log1p(-similarity).mean()


def contrastive_terms(foreground: Tensor, background: Tensor, alpha: float) -> dict[str, Tensor]:
    """The three contrast terms of a batch's region representations: ``neg`` (foreground from background),
    ``pos_fg`` (foregrounds together) and ``pos_bg`` (backgrounds together)."""
    return {
        "neg": negative_loss(foreground, background),
        "pos_fg": positive_loss(foreground, alpha),
        "pos_bg": positive_loss(background, alpha),
    }


@register_method
class C2AM(WSOLModule):
    """CAM trunk with a class-agnostic activation map learned by foreground/background contrast.

    With features ``f`` of a batch of ``n`` images, ``A = sigmoid(s)`` the activation head's map, ``v_f`` and ``v_b``
    the :func:`region_features` (optionally through a projection), each training step minimises

        L = L_cls + lambda_c2am * (L_neg + L_pos_fg + L_pos_bg)

    (:func:`negative_loss`, :func:`positive_loss` with rank weights ``exp(-alpha r)``). The contrast reaches the
    activation head and the trunk; ``L_cls`` (the base's cross-entropy on the CAM head) keeps the classifier.

    The contrast cannot tell foreground from background (swapping ``A`` and ``1 - A`` leaves it unchanged), so the
    border rule fixes the side: every training step folds :func:`~wsol.models.c2am_net.border_excess` of the batch's
    ``A`` into the network's ``border_excess`` buffer (an exponential average, ``polarity_momentum``), and the
    network's maps are flipped while it is positive. ``net.fix_polarity(batches)`` recomputes it on any split.

    :meth:`cams` and ``forward_with_cams`` give the oriented activation logits (the same map for every class; logits,
    as FSL's, since the sigmoid would saturate the top of a confident map in float32 while keeping its level sets);
    :meth:`class_cams` gives the CAM head's class maps.

    Args:
        lambda_c2am: weight of the contrast (> 0).
        alpha: rank-weight decay of the positive terms (the paper's 0.25; 0 weighs every pair alike).
        projection_dim: None (the paper: the pooled trunk features are contrasted as they are) or the width of a
            linear + ReLU projection applied to both representations, trained with the heads.
        polarity_momentum: weight of the running value in the border statistic's average, in [0, 1).
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, ...). ``mixer`` is not
            supported: a mixed image has no single foreground.
    """

    def __init__(
        self,
        lambda_c2am: float = 1.0,
        alpha: float = 0.25,
        projection_dim: int | None = None,
        polarity_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        for name, value in (("lambda_c2am", lambda_c2am), ("alpha", alpha)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if lambda_c2am <= 0:
            raise ValueError(f"lambda_c2am must be > 0, got {lambda_c2am}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if projection_dim is not None and (
            isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim < 1
        ):
            raise ValueError(f"projection_dim must be None or an int >= 1, got {projection_dim!r}")
        if isinstance(polarity_momentum, bool) or not 0.0 <= polarity_momentum < 1.0:
            raise ValueError(f"polarity_momentum must be in [0, 1), got {polarity_momentum!r}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by C2AM: a mixed image has no single foreground")
        super().__init__(**kwargs)
        channels = self.net.backbone.out_channels
        self.projection = (
            None
            if projection_dim is None
            else nn.Sequential(nn.Linear(channels, projection_dim), nn.ReLU(inplace=True))
        )

    def build_network(self, backbone: nn.Module) -> C2AMNet:
        return C2AMNet(backbone, self.hparams.num_classes)

    def head_modules(self) -> tuple[nn.Module, ...]:
        """The network's heads and, when configured, the projection (training only)."""
        return self.net.new_modules() + (() if self.projection is None else (self.projection,))

    def class_cams(self, x: Tensor, classes: Tensor | None = None) -> Tensor:
        """The CAM head's class maps (:meth:`C2AMNet.class_cams`)."""
        return self.net.class_cams(x, classes)

    # ------------------------------------------------------------------------------------- losses
    def contrast(self, features: Tensor, logits_map: Tensor) -> dict[str, Tensor]:
        """The contrast terms of a batch from its features and raw activation logits ``(B, 1, h, w)``, in float32."""
        with torch.autocast(features.device.type, enabled=False):
            activation = torch.sigmoid(logits_map.float())[:, 0]
            fg, bg = region_features(features.float(), activation)
            if self.projection is not None:
                fg, bg = self.projection(fg), self.projection(bg)
            return contrastive_terms(fg, bg, self.hparams.alpha)

    @torch.no_grad()
    def update_polarity(self, logits_map: Tensor) -> None:
        """Fold the batch's border statistic into the network's ``border_excess`` (exponential average)."""
        batch = border_excess(torch.sigmoid(logits_map.detach().float())[:, 0]).mean()
        running = self.net.border_excess
        running.mul_(self.hparams.polarity_momentum).add_((1.0 - self.hparams.polarity_momentum) * batch)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_cls + lambda_c2am (L_neg + L_pos_fg + L_pos_bg)`` and its terms (with ``border``, the running
        border statistic, for the log); updates the polarity statistic."""
        images, targets = batch["image"], self.targets(batch)
        logits, s, features = self.net.c2am_forward(images)
        cls = self.classification_loss(logits, targets)
        terms = self.contrast(features, s)
        if self.training:
            self.update_polarity(s)
        total = cls + self.hparams.lambda_c2am * (terms["neg"] + terms["pos_fg"] + terms["pos_bg"])
        return total, {"cls": cls, **terms, "border": self.net.border_excess.detach().clone()}
