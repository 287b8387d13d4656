"""AutoMix (Liu, Li, Wu, Liu, Chen, Wu and Li, ECCV 2022, arXiv 2103.13027), written from the paper
(docs/methods.md §19).

AutoMix is a mixer that owns modules: a Mix Block (:class:`~wsol.augment.mix_block.MixBlock`) that learns to mix,
and a momentum (EMA) copy of the network that feeds it features and judges its mixes. The training method keeps
them as its ``mix_modules`` (:meth:`AutoMix.build_modules`), so they are saved, moved and optimised with it.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.augment.base import MixContext, Mixer, MixOutput, Pairing, register_mixer
from wsol.augment.mix_block import MixBlock

__all__ = ["AutoMix", "AutoMixModules", "momentum_at"]


class _Captured(Exception):
    """Raised by the feature hook to stop the encoder's forward once the Mix Block's features are out."""


def momentum_at(progress: float, start: float, end: float) -> float:
    """The momentum encoder's coefficient after ``progress`` (in [0, 1]) of training: cosine from ``start`` to
    ``end``."""
    progress = min(max(progress, 0.0), 1.0)
    return end - (end - start) * (1.0 + math.cos(math.pi * progress)) / 2.0


class AutoMixModules(nn.Module):
    """What AutoMix trains beside the network: the momentum encoder and the Mix Block.

    Args:
        net: the network being trained; a frozen copy becomes the momentum encoder (updated by :meth:`follow`).
        feature_layer: name of the backbone submodule whose output feeds the Mix Block (``"body.6"``: the third
            stage of the ResNets), or None for the backbone's output.
        reduction: the Mix Block's channel reduction.
        lam_channel: condition the Mix Block on λ through an extra channel.
        probe_size: side of the blank image run once to read the feature layer's channel count.
    """

    def __init__(
        self,
        net: nn.Module,
        feature_layer: str | None = "body.6",
        reduction: int = 2,
        lam_channel: bool = True,
        probe_size: int = 96,
    ) -> None:
        super().__init__()
        self.feature_layer = feature_layer
        self.encoder = copy.deepcopy(net)
        self.encoder.requires_grad_(False)
        if feature_layer is not None:
            names = [name for name, _ in self.encoder.backbone.named_modules() if name]
            if feature_layer not in names:
                raise ValueError(
                    f"AutoMix feature_layer {feature_layer!r} is not a submodule of the backbone "
                    f"(it has {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}); None uses its output"
                )
        mode = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            device = next(self.encoder.parameters()).device
            channels = self.features(torch.zeros(1, 3, probe_size, probe_size, device=device)).shape[1]
        self.encoder.train(mode)
        self.mix_block = MixBlock(channels, reduction, lam_channel)

    def features(self, images: Tensor) -> Tensor:
        """The encoder's feature map at ``feature_layer`` (its forward stops there)."""
        if self.feature_layer is None:
            return self.encoder.features(images)
        captured: dict[str, Tensor] = {}

        def keep(module: nn.Module, inputs: object, output: Tensor) -> None:
            captured["features"] = output
            raise _Captured

        handle = self.encoder.backbone.get_submodule(self.feature_layer).register_forward_hook(keep)
        try:
            self.encoder.features(images)
        except _Captured:
            pass
        finally:
            handle.remove()
        return captured["features"]

    @torch.no_grad()
    def follow(self, net: nn.Module, momentum: float) -> None:
        """Momentum update of the encoder's parameters: ``theta_k <- m theta_k + (1 - m) theta``."""
        for mine, theirs in zip(self.encoder.parameters(), net.parameters(), strict=True):
            mine.lerp_(theirs.detach().to(mine.dtype), 1.0 - momentum)


@register_mixer("automix")
class AutoMix(Mixer):
    """Learned mixing: a Mix Block, fed by a momentum encoder, makes the masks the network trains on.

    Per batch (docs/methods.md §19): the encoder follows the network (momentum ``m``, cosine from ``momentum`` to
    ``end_momentum``); two ratios ``lam ~ Beta(alpha, alpha)`` and two pairings are drawn, one for the Mix Block
    and one for the network. The Mix Block turns the encoder's features into a mask for each; it learns from the
    mixed-label loss of its mix through the encoder (``block_weight``) and a hinge keeping its mask's mean within
    ``mask_margin`` of λ (``mask_weight``). The network trains on the other mix (mask detached; plain MixUp when
    λ is within ``lam_margin`` of 0 or 1) and, with ``clean_weight``, on the clean batch.

    The extra losses come back in ``MixOutput.losses`` (``automix_clean``, ``automix_block``, ``automix_mask``).
    A batch the network sees unmixed (``prob`` < 1, or a batch of one image) still trains the Mix Block (its two
    losses; no clean term: the network's own loss is already on the clean batch), and the encoder still follows.
    The network's label weight is the mask's mean per image (``correct_lam``, the toolkit's convention; the paper
    uses λ, within ``mask_margin`` of it once the block has learnt). Defaults: the paper's CIFAR-100 ResNet-18.

    Args:
        alpha: Beta concentration of λ.
        prob: probability of mixing a batch.
        pairing: ``"permute"`` or ``"flip"``.
        seed: generator seed.
        momentum: the encoder's momentum at the start of training.
        end_momentum: its momentum at the end (cosine schedule over the Trainer's steps).
        feature_layer: backbone submodule feeding the Mix Block (``"body.6"``: a ResNet's third stage, the paper's);
            None: the backbone's output.
        reduction: the Mix Block's channel reduction.
        lam_channel: condition the Mix Block on λ through an extra channel.
        mask_weight: weight of the mask's hinge loss.
        mask_margin: tolerance of the mask's mean around λ.
        lam_margin: plain MixUp for the network when λ or 1 - λ is at most this.
        block_weight: weight of the Mix Block's mixed-label loss.
        clean_weight: weight of the network's loss on the clean batch.
        correct_lam: label weight = mask mean per image (True) or λ (False, the paper).
    """

    def __init__(
        self,
        alpha: float = 2.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
        momentum: float = 0.999,
        end_momentum: float = 0.999999,
        feature_layer: str | None = "body.6",
        reduction: int = 2,
        lam_channel: bool = True,
        mask_weight: float = 0.1,
        mask_margin: float = 0.1,
        lam_margin: float = 0.08,
        block_weight: float = 1.0,
        clean_weight: float = 1.0,
        correct_lam: bool = True,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        if not (0.0 <= momentum <= 1.0 and 0.0 <= end_momentum <= 1.0):
            raise ValueError(f"momentum and end_momentum must be in [0, 1], got {momentum} and {end_momentum}")
        if min(mask_weight, mask_margin, block_weight, clean_weight) < 0 or not 0.0 <= lam_margin < 0.5:
            raise ValueError("the loss weights and mask_margin must be >= 0 and lam_margin in [0, 0.5)")
        self.momentum, self.end_momentum = float(momentum), float(end_momentum)
        self.feature_layer = feature_layer
        self.reduction = int(reduction)
        self.lam_channel = bool(lam_channel)
        self.mask_weight, self.mask_margin = float(mask_weight), float(mask_margin)
        self.lam_margin = float(lam_margin)
        self.block_weight, self.clean_weight = float(block_weight), float(clean_weight)
        self.correct_lam = bool(correct_lam)

    def build_modules(self, net: nn.Module) -> AutoMixModules:
        return AutoMixModules(net, self.feature_layer, self.reduction, self.lam_channel)

    def __call__(self, images: Tensor, targets: Tensor) -> MixOutput:
        raise TypeError(
            "AutoMix needs its Mix Block and momentum encoder: a training method built with this mixer mixes with "
            "mixer.mix_batch(method, images, targets)"
        )

    def mix_batch(self, system: MixContext, images: Tensor, targets: Tensor) -> MixOutput:
        modules = system.mix_modules
        if not isinstance(modules, AutoMixModules):
            raise TypeError("AutoMix.mix_batch needs a method built with this mixer (its mix_modules are AutoMix's)")
        index = self.draw_pairing(images, targets)  # None: the network's batch stays unmixed (prob, one image)
        index_block = self.pair_index(images.shape[0]).to(images.device)
        lam = self.sample_beta() if index is not None else 1.0
        lam_block = self.sample_beta()
        modules.follow(system.net, momentum_at(system.training_progress(), self.momentum, self.end_momentum))
        size = tuple(images.shape[-2:])
        with torch.no_grad():
            features = modules.features(images)
        # The Mix Block's sample, drawn on every batch, mixed or not: its mask keeps the graph; the frozen encoder
        # judges the mix against λ. So every trainable parameter has a gradient at every step (DDP needs no
        # find_unused_parameters) and the block's logged losses average over real samples only.
        mask_block = modules.mix_block(features, lam_block, index_block, size)
        mixed_block = mask_block * images + (1.0 - mask_block) * images[index_block]
        targets_block = lam_block * targets + (1.0 - lam_block) * targets[index_block]
        block_loss = system.classification_loss(modules.encoder(mixed_block), targets_block)
        mask_loss = F.relu((mask_block.float().mean() - lam_block).abs() - self.mask_margin)
        losses = {"automix_block": self.block_weight * block_loss, "automix_mask": self.mask_weight * mask_loss}
        if index is None:
            out = self.unmixed(images, targets)
            out.losses = losses
            return out
        # The network's sample.
        with torch.no_grad():
            mask = modules.mix_block(features, lam, index, size).to(images.dtype)
        if min(lam, 1.0 - lam) <= self.lam_margin:
            mask = torch.full_like(mask, lam)
        mixed = mask * images + (1.0 - mask) * images[index]
        lam_t = mask.mean(dim=(1, 2, 3)) if self.correct_lam else torch.full_like(mask[:, 0, 0, 0], lam)
        if self.clean_weight > 0:
            losses["automix_clean"] = self.clean_weight * system.classification_loss(system(images), targets)
        out = MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask.expand_as(images[:, :1]))
        out.losses = losses
        return out
