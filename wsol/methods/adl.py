"""ADL: attention-based dropout layer (Choe & Shim, CVPR 2019, arXiv 1908.10028).

Hyper-parameter names and defaults follow the WSOL benchmark of Choe et al. ("Evaluating Weakly Supervised
Object Localization Methods Right", CVPR 2020, arXiv 2001.07437): ``adl_drop_rate`` 0.75, ``adl_threshold``
(the paper's ``gamma``) 0.9.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.seeding import METHOD, derive_seed, rank_keys

__all__ = ["ADL", "AttentionDropout", "default_adl_layers"]


class AttentionDropout(nn.Module):
    """The parameter-free ADL applied to a feature map ``(B, C, h, w)`` in training; the identity in eval.

    Self-attention ``A = mean_c F`` (``(B, 1, h, w)``); drop mask ``M_drop = [A < gamma * max_hw A]`` with the
    maximum taken per image; importance map ``M_imp = sigmoid(A)``. One of the two is drawn per *call*, i.e.
    for the whole batch as in the benchmark code (one scalar draw per forward): the drop mask with probability
    ``drop_rate``, else the importance map. The output is ``F * M`` (broadcast over channels). The drop mask
    hides the most discriminative region so the rest must be learned; the importance map sharpens it.

    Args:
        drop_rate: probability of using the drop mask for a batch.
        threshold: ``gamma``, the fraction of the per-image maximum attention above which pixels are dropped.
        generator: CPU generator of the per-batch draw; None uses torch's global RNG.
    """

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9, generator: torch.Generator | None = None):
        super().__init__()
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.drop_rate, self.threshold, self.generator = float(drop_rate), float(threshold), generator

    @staticmethod
    def attention(features: Tensor) -> Tensor:
        """Channel-mean self-attention map ``(B, 1, h, w)``."""
        return features.mean(dim=1, keepdim=True)

    def drop_mask(self, attention: Tensor) -> Tensor:
        """1 where the attention is below ``threshold`` times the image's maximum, else 0."""
        peak = attention.amax(dim=(1, 2, 3), keepdim=True)
        return (attention < self.threshold * peak).to(attention.dtype)

    @staticmethod
    def importance_map(attention: Tensor) -> Tensor:
        """``sigmoid(attention)``."""
        return torch.sigmoid(attention)

    def forward(self, features: Tensor) -> Tensor:
        if not self.training:
            return features
        attention = self.attention(features)
        use_drop = torch.rand((), generator=self.generator).item() < self.drop_rate
        return features * (self.drop_mask(attention) if use_drop else self.importance_map(attention))

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        """Forward hook replacing ``module``'s output by this layer's output."""
        if not isinstance(output, Tensor) or output.ndim != 4:
            raise TypeError(f"ADL needs a (B, C, h, w) tensor output, got {type(output).__name__} from {module}")
        # The hooked module's mode decides: the network alone (``load_model``) in eval mode never drops.
        return self(output) if module.training else output

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


def default_adl_layers(backbone: nn.Module) -> list[str]:
    """The last two children of ``backbone.body`` when it is an ``nn.Sequential`` (a ResNet's layer3, layer4).

    Raises:
        ValueError: for any other backbone, which then needs explicit ``adl_layers``.
    """
    body = getattr(backbone, "body", None)
    if not isinstance(body, nn.Sequential) or len(body) < 2:
        raise ValueError(
            "adl_layers=None places ADL after the last two children of backbone.body, which must be an "
            "nn.Sequential of at least two modules; pass adl_layers= (names from backbone.named_modules())"
        )
    names = [name for name, _ in body.named_children()]
    return [f"body.{names[-2]}", f"body.{names[-1]}"]


@register_method
class ADL(WSOLModule):
    """CAM with attention-based dropout after chosen backbone submodules during training.

    The loss is CAM's (:meth:`WSOLModule.loss`, mixer included); only the features change: the output of
    each module named in ``adl_layers`` passes through its own :class:`AttentionDropout` (independent draws
    per layer and batch). The layers are forward hooks on the backbone, so the state dict is CAM's (weights
    move freely between the two) and eval-mode outputs equal CAM's on the same weights.

    Placement: the benchmark's ResNet-50 inserts ADL after block 0 of layer3 and after blocks 0 and 2 of
    layer4; the default here (:func:`default_adl_layers`) is the end of the last two stages, i.e. the last
    two children of ``backbone.body``. The benchmark's ResNet-50 positions on ``resnet50`` with the default
    stem are ``["body.6.0", "body.7.0", "body.7"]``.

    Args:
        adl_drop_rate: probability that a layer uses its drop mask for a batch (benchmark default 0.75).
        adl_threshold: ``gamma``, drop threshold as a fraction of the per-image max attention (default 0.9).
        adl_layers: dotted names of backbone submodules (relative to ``self.backbone``) whose outputs get ADL;
            None for :func:`default_adl_layers`.
        seed: seed of the CPU generator shared by the layers' draws; None uses torch's global RNG. Either is
            reseeded before every training batch from ``(seed, epoch, batch)`` (see :meth:`seed_step`), so a
            resumed run drops what the uninterrupted run dropped.
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, mixer, ...).
    """

    def __init__(
        self,
        adl_drop_rate: float = 0.75,
        adl_threshold: float = 0.9,
        adl_layers: list[str] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= adl_drop_rate <= 1.0:
            raise ValueError(f"adl_drop_rate must be in [0, 1], got {adl_drop_rate}")
        if not 0.0 <= adl_threshold <= 1.0:
            raise ValueError(f"adl_threshold must be in [0, 1], got {adl_threshold}")
        if adl_layers is not None and (
            isinstance(adl_layers, str) or not adl_layers or not all(isinstance(n, str) for n in adl_layers)
        ):
            raise ValueError(f"adl_layers must be None or a non-empty list of module names, got {adl_layers!r}")
        if adl_layers is not None and len(set(adl_layers)) != len(adl_layers):
            raise ValueError(f"adl_layers names a module twice: {adl_layers!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
        super().__init__(**kwargs)
        names = list(adl_layers) if adl_layers is not None else default_adl_layers(self.backbone)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.adl = nn.ModuleList()
        for name in names:
            try:
                target = self.backbone.get_submodule(name)
            except AttributeError as err:
                raise ValueError(f"adl_layers: the backbone has no submodule {name!r}") from err
            layer = AttentionDropout(adl_drop_rate, adl_threshold, self.generator)
            # A bound method of a registered submodule: deepcopy and pickle map it to the copy's own layer.
            target.register_forward_hook(layer.hook)
            self.adl.append(layer)
        self.adl_layer_names = names

    def seed_step(self, epoch: int, batch_idx: int, rank: int = 0) -> None:
        super().seed_step(epoch, batch_idx, rank)
        if self.generator is not None:  # shared by the layers: reseeding it in place reseeds them all
            self.generator.manual_seed(derive_seed(METHOD, self.hparams.seed, epoch, batch_idx, *rank_keys(rank)))
