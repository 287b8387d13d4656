"""Hide-and-Seek (Singh & Lee, ICCV 2017, arXiv 1704.04232): CAM trained on images with random patches hidden.

Hyper-parameter names, defaults and the hiding rule follow the WSOL benchmark of Choe et al. ("Evaluating
Weakly Supervised Object Localization Methods Right", CVPR 2020, arXiv 2001.07437), whose ``has`` step takes a
cell side in pixels (``has_grid_size``) and a hiding probability (``has_drop_rate``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.seeding import METHOD, derive_seed, rank_keys

__all__ = ["HaS", "hide_patches"]


def hide_patches(
    images: Tensor, grid_size: int, drop_rate: float, generator: torch.Generator | None = None, fill: float = 0.0
) -> Tensor:
    """Hide random square cells of each image (the training-time input of Hide-and-Seek).

    Each image of ``(B, C, H, W)`` is cut into cells of ``grid_size x grid_size`` pixels starting at the
    top-left corner; the last row / column of cells is cut short when ``H`` or ``W`` is not a multiple of
    ``grid_size``, so the cells always tile the whole image. Every cell of every image is hidden
    independently with probability ``drop_rate`` (one ``U[0, 1)`` draw per cell, hidden when below
    ``drop_rate``, drawn in ``(B, rows, cols)`` order), and all channels of a hidden cell are set to
    ``fill``. The paper fills with the dataset mean pixel so that the expected first-layer activation is the
    same in training and testing; on normalised images that mean is 0, the value the benchmark writes.

    Args:
        images: ``(B, C, H, W)`` images (not modified).
        grid_size: side ``S`` of a cell in pixels.
        drop_rate: probability ``p`` of hiding a cell.
        generator: CPU generator of the draws; None uses torch's global RNG.
        fill: value of hidden pixels.

    Returns:
        A new tensor like ``images`` with the hidden cells set to ``fill``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    rows, cols = -(-h // grid_size), -(-w // grid_size)
    hidden = torch.rand((b, rows, cols), generator=generator) < drop_rate
    # Each cell flag covers grid_size x grid_size pixels; the crop trims the short last row and column.
    hidden = hidden.repeat_interleave(grid_size, dim=1).repeat_interleave(grid_size, dim=2)[:, :h, :w]
    return images.masked_fill(hidden[:, None].to(images.device), fill)


@register_method
class HaS(WSOLModule):
    """CAM whose training images have random cells hidden, so that it must also find less discriminative parts.

    Training loss: ``L_cls(f(hide(x)), y)``, the base classification loss (CE, or BCE for multi-label) on
    :func:`hide_patches` of the batch, a fresh hiding per image and step. A configured ``mixer`` then mixes
    the hidden images as the base method would (hiding is a per-image augmentation, applied before batch
    mixing). Validation and inference see whole images (the paper's test-time rule), so ``forward``,
    ``forward_with_cams`` and ``cams`` are those of CAM.

    ``has_grid_size`` is the cell *side in pixels*, as in the benchmark code (the paper's patch size ``S``,
    which it sets to 16-56 px on 224 px images), not a number of cells: the default 4 hides 4 x 4 px cells.

    Args:
        has_grid_size: side of a hidden cell in pixels (benchmark default 4).
        has_drop_rate: probability of hiding each cell (benchmark default 0.5).
        seed: seed of the private CPU generator of the hiding draws; None draws from torch's global RNG
            (which ``pl.seed_everything`` seeds). Either is reseeded before every training batch from
            ``(seed, epoch, batch)`` (see :meth:`seed_step`), so a resumed run hides what the uninterrupted run hid.
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, mixer, ...).
    """

    def __init__(
        self,
        has_grid_size: int = 4,
        has_drop_rate: float = 0.5,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(has_grid_size, bool) or not isinstance(has_grid_size, int) or has_grid_size < 1:
            raise ValueError(f"has_grid_size must be a positive int (pixels), got {has_grid_size!r}")
        if not 0.0 <= has_drop_rate <= 1.0:
            raise ValueError(f"has_drop_rate must be in [0, 1], got {has_drop_rate}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
        super().__init__(**kwargs)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def seed_step(self, epoch: int, batch_idx: int, rank: int = 0) -> None:
        super().seed_step(epoch, batch_idx, rank)
        if self.generator is not None:
            self.generator.manual_seed(derive_seed(METHOD, self.hparams.seed, epoch, batch_idx, *rank_keys(rank)))

    def hide(self, images: Tensor) -> Tensor:
        """:func:`hide_patches` with this module's grid size, drop rate and generator."""
        return hide_patches(images, self.hparams.has_grid_size, self.hparams.has_drop_rate, self.generator)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        images, targets = self.hide(batch["image"]), self.targets(batch)
        mixed = self.mix(images, targets)
        cls = self.classification_loss(self(mixed.images), mixed.targets)
        return cls + mixed.extra_loss(), {"cls": cls, **mixed.losses}
