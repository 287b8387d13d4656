"""Mixer interface and registry for batch-level mixed-sample data augmentation (MSDA).

Every mixer takes a batch of images ``(B, C, H, W)`` and one-hot / multi-hot targets ``(B, K)`` and
returns a :class:`MixOutput`. Mixing happens on the images' device; random numbers come from a CPU
``torch.Generator`` seeded from ``seed`` so that a given seed reproduces the same sequence of mixes. In
training, :meth:`Mixer.seed_step` reseeds it per batch from ``(seed, epoch, batch)``, so resumes are exact.

Conventions (docs/methods.md §14):

* ``lam`` is the fraction of image a actually kept *after* clipping (CutMix/ResizeMix: the area,
  FMix: the binarised mask mean, HMix: exact, GMix: the mask mean).
* Targets are mixed linearly, ``lam * t_a + (1 - lam) * t_b``; this is exact for soft-target CE and
  for BCE (linear in the target), so multi-hot targets need no clipping.
* Pairing is either a random permutation (``"permute"``, the MixUp/CutMix/FMix references; it can
  pair a sample with itself) or the reversed batch (``"flip"``, timm / HMix-GMix).
* Boxes and masks in the batch are **not** mixed: in WSOL they are evaluation-only annotations, and
  mixing is applied during training only. The returned ``mask`` tells which pixels came from which
  image, should a loss need it.

The *dynamic* mixers (PuzzleMix, AutoMix; docs/methods.md §18 and §19) make masks that depend on the network. A
training method therefore mixes through :meth:`Mixer.mix_batch` with itself as the :class:`MixContext`; the
stateless mixers ignore it. A dynamic mixer may own modules (:meth:`Mixer.build_modules`: trained, saved and
moved with the method) and may add loss terms of its own (:attr:`MixOutput.losses`), which the method adds to
its loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from wsol.registry import Registry
from wsol.seeding import MIXER, derive_seed, rank_keys

__all__ = [
    "MIXERS",
    "MixContext",
    "MixOutput",
    "Mixer",
    "Pairing",
    "create_mixer",
    "list_mixers",
    "register_mixer",
]

Pairing = Literal["permute", "flip"]


@dataclass
class MixOutput:
    """Result of a mixer call.

    Attributes:
        images: ``(B, C, H, W)`` mixed images.
        targets: ``(B, K)`` mixed soft targets, ``lam * t_a + (1 - lam) * t_b``.
        lam: ``(B,)`` fraction of image a actually kept (after clipping), per sample.
        index: ``(B,)`` long, the partner ``b`` of each sample ``a``.
        mask: ``(B, 1, H, W)`` float in [0, 1], the weight of image a per pixel (None for MixUp).
        losses: loss terms the mixer adds to the method's loss, by name (PuzzleMix's clean loss, AutoMix's Mix
            Block losses); empty for the stateless mixers.
    """

    images: Tensor
    targets: Tensor
    lam: Tensor
    index: Tensor
    mask: Tensor | None
    losses: dict[str, Tensor] = field(default_factory=dict)

    def extra_loss(self) -> Tensor | float:
        """The sum of :attr:`losses` (0.0 when there are none)."""
        return sum(self.losses.values(), 0.0)


class MixContext(Protocol):
    """What a dynamic mixer reads from the training method that calls it (a ``WSOLModule``).

    Attributes:
        net: the network being trained (``forward`` gives logits).
        mix_modules: the module the mixer built with :meth:`Mixer.build_modules` (None if it built none).
    """

    net: nn.Module
    mix_modules: nn.Module | None

    def __call__(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)`` of the network."""
        ...

    def classification_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The method's classification loss for soft targets ``(B, K)``."""
        ...

    def training_progress(self) -> float:
        """Fraction of the training steps done, in [0, 1] (0 outside a Trainer)."""
        ...


class Mixer:
    """Base class of the mixers: sampling, pairing and the unmixed fallback.

    Subclasses implement :meth:`mix`. Plain class (not an ``nn.Module``) so that LightningCLI can
    build it from YAML via ``class_path``.

    Args:
        alpha: Concentration of the Beta(alpha, alpha) distribution of lambda.
        prob: Probability of mixing a batch; otherwise the batch is returned unmixed.
        pairing: ``"permute"`` (random permutation) or ``"flip"`` (reversed batch).
        seed: Seed of the CPU generator; None draws a seed from torch's global RNG.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        prob: float = 1.0,
        pairing: Pairing = "permute",
        seed: int | None = None,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if pairing not in ("permute", "flip"):
            raise ValueError(f"pairing must be 'permute' or 'flip', got {pairing!r}")
        self.alpha = float(alpha)
        self.prob = float(prob)
        self.pairing = pairing
        self.seed = seed
        # Without a seed, draw one from torch's global RNG, so that ``pl.seed_everything`` still makes runs repeat.
        self.base_seed = int(seed) if seed is not None else int(torch.randint(2**62, ()).item())
        self.generator = torch.Generator()
        self.generator.manual_seed(self.base_seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alpha={self.alpha}, prob={self.prob}, pairing={self.pairing!r}, seed={self.seed})"
        )

    def seed_step(self, epoch: int, batch_idx: int, rank: int = 0) -> None:
        """Reseed the generator from ``(seed, epoch, batch_idx)`` (and the DDP ``rank`` beyond rank 0): that batch's
        mix no longer depends on earlier draws, and ranks draw differently.

        :class:`~wsol.methods.base.WSOLModule` calls this before every training batch, so a run resumed from a
        checkpoint mixes each batch as the uninterrupted run did, with no generator state in the checkpoint.
        """
        self.generator.manual_seed(derive_seed(MIXER, self.base_seed, epoch, batch_idx, *rank_keys(rank)))

    # -- random helpers (all on the CPU generator) -------------------------------------------
    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """One draw from U(low, high)."""
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def sample_beta(self, a: float | None = None, b: float | None = None) -> float:
        """One draw from Beta(a, b) (defaults: Beta(alpha, alpha)) using the seeded generator."""
        a = self.alpha if a is None else a
        b = self.alpha if b is None else b
        # torch's Beta/Gamma samplers take no generator, so the draw goes through a NumPy generator
        # seeded from ours: the torch generator stays the single source of state.
        seed = int(torch.randint(0, 2**62, (), generator=self.generator).item())
        return float(np.random.default_rng(seed).beta(a, b))

    def pair_index(self, batch_size: int) -> Tensor:
        """Partner of each sample: a random permutation or the reversed batch."""
        if self.pairing == "flip":
            return torch.arange(batch_size - 1, -1, -1)
        return torch.randperm(batch_size, generator=self.generator)

    # -- interface ---------------------------------------------------------------------------
    def __call__(self, images: Tensor, targets: Tensor) -> MixOutput:
        """Mix a batch with probability ``prob``.

        Args:
            images: ``(B, C, H, W)`` float images.
            targets: ``(B, K)`` float one-hot / multi-hot (or already soft) targets.

        Returns:
            The mixed batch; with probability ``1 - prob`` the batch unchanged with ``lam = 1``,
            ``index = arange(B)`` and ``mask = None``.
        """
        index = self.draw_pairing(images, targets)
        if index is None:
            return self.unmixed(images, targets)
        with torch.no_grad():
            out = self.mix(images, targets, index)
        return out

    def draw_pairing(self, images: Tensor, targets: Tensor) -> Tensor | None:
        """Check the batch, draw whether to mix it (``prob``) and, if so, the partner of each sample.

        Returns:
            ``(B,)`` long partner indices on the images' device, or None to leave the batch unmixed.

        Raises:
            ValueError: if ``images`` is not ``(B, C, H, W)`` or ``targets`` not ``(B, K)``.
        """
        if images.ndim != 4 or targets.ndim != 2 or images.shape[0] != targets.shape[0]:
            raise ValueError(
                f"expected images (B, C, H, W) and targets (B, K), got {tuple(images.shape)} and {tuple(targets.shape)}"
            )
        b = images.shape[0]
        do_mix = self.prob >= 1.0 or torch.rand((), generator=self.generator).item() < self.prob
        if not do_mix or b < 2:
            return None
        return self.pair_index(b).to(images.device)

    @staticmethod
    def unmixed(images: Tensor, targets: Tensor) -> MixOutput:
        """The batch as it is: ``lam = 1``, ``index = arange(B)``, no mask."""
        b = images.shape[0]
        return MixOutput(
            images=images,
            targets=targets,
            lam=torch.ones(b, device=images.device, dtype=images.dtype),
            index=torch.arange(b, device=images.device),
            mask=None,
        )

    def mix_batch(self, system: MixContext, images: Tensor, targets: Tensor) -> MixOutput:
        """Mix a training batch of ``system`` (the method calling): the stateless mixers ignore it and call
        themselves; the dynamic ones (PuzzleMix, AutoMix) read its network, loss and modules."""
        return self(images, targets)

    def build_modules(self, net: nn.Module) -> nn.Module | None:
        """Modules this mixer trains beside ``net`` (AutoMix's Mix Block and momentum encoder), or None.

        The training method calls this once when it is built and keeps the result as its ``mix_modules``, so the
        modules move with it, are saved in its checkpoints and are optimised with it.
        """
        return None

    def mix(self, images: Tensor, targets: Tensor, index: Tensor) -> MixOutput:
        """Mix ``images`` with ``images[index]``; implemented by subclasses."""
        raise NotImplementedError

    @staticmethod
    def mix_targets(targets: Tensor, index: Tensor, lam: Tensor) -> Tensor:
        """``lam * t_a + (1 - lam) * t_b`` with a per-sample ``lam`` of shape (B,)."""
        lam = lam.to(targets.dtype).unsqueeze(1)
        return lam * targets + (1.0 - lam) * targets[index]


MIXERS: Registry[type[Mixer]] = Registry("mixer")


def register_mixer(name: str) -> Callable[[type[Mixer]], type[Mixer]]:
    """Class decorator registering a mixer under ``name`` (:data:`MIXERS`).

    Raises:
        ValueError: If ``name`` is already registered.
    """
    return MIXERS.register(name)


def create_mixer(name: str, **kwargs: object) -> Mixer:
    """Build a registered mixer by name, e.g. ``create_mixer("cutmix", alpha=1.0, seed=0)``."""
    return MIXERS.get(name)(**kwargs)


def list_mixers() -> list[str]:
    """Sorted names of the registered mixers."""
    return MIXERS.names()
