"""PuzzleMix (Kim, Choo and Song, ICML 2020, arXiv 2009.06962), written from the paper (docs/methods.md §18)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from wsol.augment.base import MixContext, Mixer, MixOutput, Pairing, register_mixer
from wsol.augment.block_transport import move_blocks, transport_plans
from wsol.augment.puzzle_labels import block_masks
from wsol.models.backbone import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["PuzzleMix", "input_saliency"]


def input_saliency(system: MixContext, images: Tensor, targets: Tensor, train_mode: bool) -> tuple[Tensor, Tensor]:
    """Saliency ``sqrt(mean_c (dL/dx)^2)`` of the clean loss ``L`` at every pixel, and that loss.

    With ``train_mode`` the network runs as it trains (batch statistics) and the loss keeps its graph, so the
    caller can add it to the step's loss: the parameters then learn from the clean batch in the same backward
    pass. Otherwise the network runs in eval mode and the loss is detached.

    Returns:
        ``(B, H, W)`` saliency (detached) and the scalar clean loss.
    """
    x = images.detach().requires_grad_(True)
    modes = [(module, module.training) for module in system.net.modules()]
    if not train_mode:
        system.net.eval()
    try:
        with torch.enable_grad():
            loss = system.classification_loss(system(x), targets)
            (grad,) = torch.autograd.grad(loss, x, retain_graph=train_mode)
    finally:
        for module, mode in modes:
            module.training = mode
    saliency = grad.detach().float().pow(2).mean(1).sqrt()
    return saliency, loss if train_mode else loss.detach()


@register_mixer("puzzlemix")
class PuzzleMix(Mixer):
    """Saliency-guided block mixing: a graph-cut labelling of blocks, then a transport of salient blocks.

    Per batch (docs/methods.md §18): the saliency of the clean loss's input gradient; ``lam ~ Beta(alpha, alpha)``
    and ``n`` blocks per side drawn from ``block_counts``; for every pair, each block is labelled image a, image b
    or a blend (``n_labels`` levels) by minimising lost saliency + a prior towards ``lam`` + label and data
    smoothness (α-β swap graph cuts); each image's blocks are then permuted so its salient blocks land where the
    mask shows it. The label weight ``lam`` of each sample is the mean of its mask.

    The network's input gradient is needed, so a training method calls it through :meth:`mix_batch`; with
    given saliency, :meth:`mix_saliency` mixes directly. Defaults: the reference's Tiny ImageNet (64 px) commands.

    Args:
        alpha: Beta concentration of ``lam``.
        prob: probability of mixing a batch.
        pairing: ``"permute"`` or ``"flip"``.
        seed: generator seed.
        block_counts: blocks per side, one drawn uniformly per batch (those not dividing ``H`` and ``W`` skipped).
        n_labels: mixing levels per block (3: a, half-half, b).
        beta: label smoothness.
        gamma: data (colour) smoothness across block boundaries.
        eta: weight of the prior towards ``lam``.
        neigh_size: pixel cell of the colour comparison at block boundaries.
        transport: move salient blocks into the shown region.
        t_eps: transport's cost of distance.
        clean_lam: weight of the clean-batch loss added to the step's loss (its forward and backward give the
            saliency); 0 computes the saliency in eval mode and adds nothing.
        mean: the data's normalisation mean (the boundary term compares unnormalised colours).
        std: the data's normalisation standard deviation.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
        block_counts: tuple[int, ...] = (2, 4, 8, 16),
        n_labels: int = 3,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        transport: bool = True,
        t_eps: float = 0.8,
        clean_lam: float = 1.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__(alpha=alpha, prob=prob, pairing=pairing, seed=seed)
        if not block_counts or any(int(n) < 2 for n in block_counts):
            raise ValueError(f"block_counts must be blocks per side >= 2, got {block_counts}")
        if n_labels < 2:
            raise ValueError(f"n_labels must be >= 2, got {n_labels}")
        if min(beta, gamma, eta, t_eps, clean_lam) < 0 or neigh_size < 1:
            raise ValueError("beta, gamma, eta, t_eps and clean_lam must be >= 0 and neigh_size >= 1")
        self.block_counts = tuple(int(n) for n in block_counts)
        self.n_labels = int(n_labels)
        self.beta, self.gamma, self.eta = float(beta), float(gamma), float(eta)
        self.neigh_size = int(neigh_size)
        self.transport = bool(transport)
        self.t_eps = float(t_eps)
        self.clean_lam = float(clean_lam)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def __call__(self, images: Tensor, targets: Tensor) -> MixOutput:
        raise TypeError(
            "PuzzleMix needs the network's input gradients: a training method mixes with mixer.mix_batch(method, "
            "images, targets); with saliency maps at hand use mixer.mix_saliency"
        )

    def mix_batch(self, system: MixContext, images: Tensor, targets: Tensor) -> MixOutput:
        """Saliency from ``system``'s clean loss, then :meth:`mix_saliency`; the clean loss (times ``clean_lam``)
        comes back in ``losses["puzzlemix_clean"]``."""
        index = self.draw_pairing(images, targets)
        if index is None:
            return self.unmixed(images, targets)
        saliency, clean = input_saliency(system, images, targets, train_mode=self.clean_lam > 0)
        out = self.mix_saliency(images, targets, index, saliency)
        if self.clean_lam > 0:
            out.losses = {"puzzlemix_clean": self.clean_lam * clean}
        return out

    def block_count(self, height: int, width: int) -> int:
        """Blocks per side for this batch: one of ``block_counts`` dividing both sides, drawn uniformly."""
        usable = [n for n in self.block_counts if height % n == 0 and width % n == 0]
        if not usable:
            raise ValueError(f"PuzzleMix: no block count in {self.block_counts} divides the images' {height}x{width}")
        return usable[int(torch.randint(len(usable), (), generator=self.generator))]

    @torch.no_grad()
    def mix_saliency(self, images: Tensor, targets: Tensor, index: Tensor, saliency: Tensor) -> MixOutput:
        """Mix ``images`` with ``images[index]`` given each image's pixel saliency ``(B, H, W)``."""
        b, _, h, w = images.shape
        n = self.block_count(h, w)
        lam = self.sample_beta()
        pooled = F.adaptive_avg_pool2d(saliency.float().unsqueeze(1), n).squeeze(1)
        pooled = pooled / pooled.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        mean = torch.tensor(self.mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
        raw = images.float() * std + mean
        block_h, block_w = h // n, w // n
        neigh = math.gcd(min(self.neigh_size, block_h, block_w), block_h, block_w)
        masks = block_masks(
            pooled, pooled[index], raw, raw[index], lam, self.n_labels, self.beta, self.gamma, self.eta, neigh
        )
        image_a, image_b = images, images[index]
        if self.transport:
            image_a = move_blocks(image_a, transport_plans(pooled, masks, self.t_eps), n)
            image_b = move_blocks(image_b, transport_plans(pooled[index], 1.0 - masks, self.t_eps), n)
        lam_t = masks.mean(dim=(1, 2)).to(images.dtype)
        mask = F.interpolate(masks.unsqueeze(1), size=(h, w), mode="nearest").to(images.dtype)
        mixed = mask * image_a + (1.0 - mask) * image_b
        return MixOutput(mixed, self.mix_targets(targets, index, lam_t), lam_t, index, mask)
