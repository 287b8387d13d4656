"""C2AM's network: a CAM network plus a class-agnostic activation head, with the side that is foreground fixed.

The training system, with the contrastive losses and the polarity statistic, is :class:`wsol.methods.C2AM`
(docs/methods.md §20).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from wsol.models.cam_net import CAMNet, select_classes
from wsol.models.head import CAMHead

__all__ = ["C2AMNet", "border_excess"]


def border_excess(maps: Tensor) -> Tensor:
    """Per image, the mean of a ``(B, h, w)`` map over its one-position-wide border minus its mean over the map.

    Positive when the border is brighter than the map on average: the map's high side then covers the border, which
    is where the background usually is. 0 when every position is a border position (``h`` or ``w`` at most 2).
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (B, h, w), got {tuple(maps.shape)}")
    border = torch.ones_like(maps[0], dtype=torch.bool)
    border[1:-1, 1:-1] = False
    return maps[:, border].mean(dim=1) - maps.flatten(1).mean(dim=1)


class C2AMNet(CAMNet):
    """Backbone, CAM head (the logits) and a class-agnostic activation head (the localization map).

    The activation head is a 1x1 convolution to one channel followed by a one-channel BatchNorm (the paper's head
    normalises its output too, which keeps the sigmoid away from the all-foreground or all-background map); its
    output ``s`` is the logit of the foreground probability ``A = sigmoid(s)``.

    C2AM's losses are symmetric in ``A`` and ``1 - A``, so training may make either side the objects. The buffer
    ``border_excess`` holds the border rule's statistic (:func:`border_excess` of ``A``, averaged; kept up to date by
    the training system, or set with :meth:`fix_polarity`): when it is positive the high side of ``A`` covers the
    border and the map is flipped, ``-s``, so that the returned map is high on the objects.

    Args:
        backbone: a :class:`~wsol.models.Backbone`.
        num_classes: K.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(backbone, CAMHead(backbone.out_channels, num_classes))
        self.activation_head = nn.Sequential(nn.Conv2d(backbone.out_channels, 1, kernel_size=1), nn.BatchNorm2d(1))
        self.register_buffer("border_excess", torch.zeros(()))

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The CAM head and the activation head."""
        return (self.head, self.activation_head)

    @property
    def polarity(self) -> Tensor:
        """``-1.`` when the activation map is flipped (its high side covers the border), else ``1.``."""
        return 1.0 - 2.0 * (self.border_excess > 0).to(self.border_excess.dtype)

    def activation_logits(self, features: Tensor) -> Tensor:
        """The raw activation logits ``s`` ``(B, 1, h, w)`` of features, before the polarity is applied."""
        return self.activation_head(features)

    def c2am_forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``(B, K)``, raw activation logits ``(B, 1, h, w)`` and the features, from one backbone pass."""
        features = self.features(x)
        return self.head(features), self.activation_logits(features), features

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, K)`` and the oriented activation logits broadcast to every class, ``(B, K, h, w)``.

        The maps are an expanded view (no copy per class); call ``.contiguous()`` before writing into them.
        """
        logits, s, _ = self.c2am_forward(x)
        oriented = s * self.polarity.to(s.dtype)
        return logits, oriented.expand(-1, logits.shape[1], -1, -1)

    def class_cams(self, x: Tensor, classes: Tensor | list[int] | None = None) -> Tensor:
        """The CAM head's class maps ``(B, K, h, w)`` (``(B, h, w)`` for one class per image): the plain CAM of this
        network, kept beside the class-agnostic map that :meth:`cams` returns."""
        maps = self.head.class_maps(self.features(x))
        if classes is None:
            return maps
        labels = select_classes(classes, maps.shape[0], maps.shape[1], maps.device)
        return maps[torch.arange(maps.shape[0], device=maps.device), labels]

    @torch.no_grad()
    def fix_polarity(self, images: Iterable[Tensor]) -> float:
        """Set ``border_excess`` to the border rule's statistic over ``images`` (batches ``(B, 3, H, W)``, e.g. the
        tuning split's, in eval mode) and return it: the mean over the images of :func:`border_excess` of ``A``.

        Raises:
            ValueError: if ``images`` yields no image.
        """
        total, count = 0.0, 0
        device = self.border_excess.device
        for batch in images:
            a = torch.sigmoid(self.activation_logits(self.features(batch.to(device))).float())[:, 0]
            total += float(border_excess(a).sum())
            count += a.shape[0]
        if count == 0:
            raise ValueError("fix_polarity needs at least one image")
        self.border_excess.fill_(total / count)
        return total / count
