"""SPG: self-produced guidance (Zhang et al., ECCV 2018, arXiv 1807.08902).

Behaviour and defaults follow the ResNet variant in the WSOL benchmark of Choe et al. (CVPR 2020, arXiv 2001.07437).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.acol import minmax_normalize
from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method

__all__ = ["SPG", "SPG_IGNORE", "spg_bce", "spg_masks"]

# Target value of the pixels that a guidance mask leaves undecided (the benchmark's 255).
SPG_IGNORE = 255.0


def spg_masks(maps: Tensor, high: float, low: float, min_foreground: int = 30, fallback_ratio: float = 0.7) -> Tensor:
    """Self-produced guidance from per-image maps in [0, 1] (any shape ``(B, ...)``), as float targets.

    Foreground (1) where ``m > high``; if an image has fewer than ``min_foreground`` such pixels its threshold
    becomes ``fallback_ratio * max m``. Background (0) where ``m < low``, overriding the foreground; every other
    pixel is ``SPG_IGNORE``. The maps are detached: guidance is a fixed target.
    """
    flat = maps.detach().flatten(1)
    few = (flat > high).sum(dim=1) < min_foreground
    thr = torch.where(few, flat.amax(dim=1) * fallback_ratio, torch.full_like(flat[:, 0], high))
    target = torch.full_like(flat, SPG_IGNORE)
    target[flat > thr[:, None]] = 1.0
    target[flat < low] = 0.0
    return target.view_as(maps)


def spg_bce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean of ``-(t log s(z) + (1 - t) log(1 - s(z)))`` over pixels not ``SPG_IGNORE``; 0 if all are ignored."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    valid = target != SPG_IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], target[valid])


def _conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]


@register_method
class SPG(WSOLModule):
    """CAM classifier whose features also learn foreground maps supervised by the classifier's own guidance.

    Two intermediate backbone features feed branch B, ``B1 = shared(conv_1(f1))`` and ``B2 = shared(conv_2(f2))``
    (one foreground logit map each, shared tail); the final features feed the CAM head (maps ``M``, logits
    ``GAP(M)``) and branch C (one logit map). All maps are bilinearly upsampled to the image size. With ``A`` the
    min-max normalised ``M_y`` of the true class and ``G(m; h, l)`` the guidance of :func:`spg_masks`, the loss is
    ``CE(GAP(M), y) + aux_weight * (BCE(B2, G(A; t1)) + BCE(B1, G(s(B2); t2)) + BCE(C, G((s(B1) + s(B2)) / 2; t3)))``
    with ``s`` the sigmoid and BCE :func:`spg_bce` (arXiv 1807.08902, Sec. 3). The CAM is the localization map.

    Scaled to small backbones: ``f1``/``f2`` are the outputs of ``backbone.body[i]`` for ``i in branch_layers``
    (layer2 and layer3 of a ResNet; the benchmark takes the middle and end of ResNet50's layer3), B's convolutions
    are ``head_channels`` wide (the benchmark's 1024; by default the backbone's channels) and C's half that (its
    512). The new layers and the head are Xavier-initialised; the new layers train at ``lr * head_lr_mult``.

    Args:
        spg_threshold_1h: foreground threshold of B2's guidance by ``A``.
        spg_threshold_1l: background threshold of B2's guidance by ``A``.
        spg_threshold_2h: foreground threshold of B1's guidance by ``s(B2)``.
        spg_threshold_2l: background threshold of B1's guidance by ``s(B2)``.
        spg_threshold_3h: foreground threshold of C's guidance by the fused B maps.
        spg_threshold_3l: background threshold of C's guidance by the fused B maps.
        branch_layers: indices into ``backbone.body`` (an ``nn.Sequential``) whose outputs are ``f1`` and ``f2``.
        head_channels: width of branch B's convolutions; None for the backbone's channel count.
        min_foreground: fewest foreground pixels (at image size) before a mask's threshold falls back.
        fallback_ratio: the fallback foreground threshold as a fraction of the map's maximum.
        aux_weight: weight of the three BCE terms (1 in the benchmark).
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments; ``mixer`` and ``multilabel`` are not supported
            (guidance follows one class per image).
    """

    def __init__(
        self,
        spg_threshold_1h: float = 0.7,
        spg_threshold_1l: float = 0.01,
        spg_threshold_2h: float = 0.5,
        spg_threshold_2l: float = 0.05,
        spg_threshold_3h: float = 0.7,
        spg_threshold_3l: float = 0.1,
        branch_layers: tuple[int, int] = (-3, -2),
        head_channels: int | None = None,
        min_foreground: int = 30,
        fallback_ratio: float = 0.7,
        aux_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        pairs = ((spg_threshold_1h, spg_threshold_1l), (spg_threshold_2h, spg_threshold_2l))
        for i, (high, low) in enumerate((*pairs, (spg_threshold_3h, spg_threshold_3l)), start=1):
            if not 0.0 <= low < high <= 1.0:
                raise ValueError(f"spg_threshold_{i}l/{i}h must satisfy 0 <= low < high <= 1, got {low}/{high}")
        if head_channels is not None and head_channels < 2:
            raise ValueError(f"head_channels must be >= 2 or None, got {head_channels}")
        if min_foreground < 0:
            raise ValueError(f"min_foreground must be >= 0, got {min_foreground}")
        if not 0.0 < fallback_ratio <= 1.0:
            raise ValueError(f"fallback_ratio must be in (0, 1], got {fallback_ratio}")
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        for name, given in (("mixer", kwargs.get("mixer") is not None), ("multilabel", kwargs.get("multilabel"))):
            if given:
                raise ValueError(f"{name} is not supported by SPG: guidance follows one class per image")
        super().__init__(**kwargs)
        body = getattr(self.backbone, "body", None)
        if not isinstance(body, nn.Sequential):
            raise ValueError(f"backbone: SPG needs an nn.Sequential 'body' to read features from, got {body!r:.60}")
        if len(branch_layers) != 2 or any(not -len(body) <= i < len(body) for i in branch_layers):
            raise ValueError(f"branch_layers must be two indices into the {len(body)} layers of the body")
        self._branch_idx = tuple(int(i) % len(body) for i in branch_layers)
        c1, c2 = self._branch_channels()
        channels = self.backbone.out_channels
        hidden = head_channels or channels
        self.branches = nn.ModuleDict(
            {
                "b1": nn.Sequential(*_conv_relu(c1, hidden)),
                "b2": nn.Sequential(*_conv_relu(c2, hidden)),
                "shared": nn.Sequential(*_conv_relu(hidden, hidden), nn.Conv2d(hidden, 1, 1)),
                "c": nn.Sequential(*_conv_relu(channels, hidden // 2), nn.Conv2d(hidden // 2, 1, 1)),
            }
        )
        for conv in (m for m in (*self.head.modules(), *self.branches.modules()) if isinstance(m, nn.Conv2d)):
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def _body_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The body's output and the outputs of its two branch layers, from one pass through its children."""
        mids = {}
        for i, layer in enumerate(self.backbone.body):
            x = layer(x)
            if i in self._branch_idx:
                mids[i] = x
        return x, mids[self._branch_idx[0]], mids[self._branch_idx[1]]

    def _branch_channels(self) -> tuple[int, int]:
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            _, f1, f2 = self._body_features(torch.zeros(1, 3, 64, 64))
        self.backbone.train(was_training)
        return f1.shape[1], f2.shape[1]

    def spg_forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Class maps ``M (B, K, h, w)`` and the logit maps of B1, B2 and C ``(B, 1, ., .)``, at feature resolution."""
        features, f1, f2 = self._body_features(x)
        br = self.branches
        b1, b2 = br["shared"](br["b1"](f1)), br["shared"](br["b2"](f2))
        return self.head.class_maps(features), b1, b2, br["c"](features)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Classification plus the three guidance terms, logged as ``cls``, ``spg_b2``, ``spg_b1`` and ``spg_c``."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        maps, b1, b2, c = self.spg_forward(images)
        cls = self.classification_loss(maps.mean(dim=(2, 3)), targets)
        up = partial(F.interpolate, size=images.shape[-2:], mode="bilinear", align_corners=False)
        gt_maps = maps.detach()[torch.arange(maps.shape[0], device=maps.device), targets.argmax(dim=1)]
        attention = minmax_normalize(up(gt_maps.unsqueeze(1)))
        b1, b2, c = up(b1), up(b2), up(c)
        p1, p2 = torch.sigmoid(b1.detach()), torch.sigmoid(b2.detach())
        guide = partial(spg_masks, min_foreground=hp.min_foreground, fallback_ratio=hp.fallback_ratio)

        spg_b2 = spg_bce(b2, guide(attention, hp.spg_threshold_1h, hp.spg_threshold_1l))
        spg_b1 = spg_bce(b1, guide(p2, hp.spg_threshold_2h, hp.spg_threshold_2l))
        spg_c = spg_bce(c, guide((p1 + p2) / 2, hp.spg_threshold_3h, hp.spg_threshold_3l))
        total = cls + hp.aux_weight * (spg_b2 + spg_b1 + spg_c)
        return total, {"cls": cls, "spg_b2": spg_b2, "spg_b1": spg_b1, "spg_c": spg_c}

    def head_modules(self) -> tuple[nn.Module, ...]:
        """The CAM head and the SPG branches B and C."""
        return (self.head, self.branches)
