"""The few-shot fully supervised localizer's network: a CAM network plus a class-agnostic foreground head.

The training system, with the box supervision and the sources, is :class:`wsol.methods.FSL`.
"""

from __future__ import annotations

from torch import Tensor, nn

from wsol.models.cam_net import CAMNet
from wsol.models.head import CAMHead

__all__ = ["FSLNet"]


class FSLNet(CAMNet):
    """Backbone, CAM head (the logits) and a 1x1 convolution to one foreground logit map (the localization map).

    Args:
        backbone: a :class:`~wsol.models.Backbone`.
        num_classes: K.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__(backbone, CAMHead(backbone.out_channels, num_classes))
        self.fg_head = nn.Conv2d(backbone.out_channels, 1, kernel_size=1)

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The CAM head and the foreground head."""
        return (self.head, self.fg_head)

    def fsl_forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, K)`` of the CAM head and foreground logits ``(B, 1, h, w)`` from one backbone pass."""
        features = self.features(x)
        return self.head(features), self.fg_head(features)

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, K)`` and the foreground logit map broadcast to every class, ``(B, K, h, w)``.

        The maps are an expanded view (no copy per class); call ``.contiguous()`` before writing into them.
        """
        logits, fg = self.fsl_forward(x)
        return logits, fg.expand(-1, logits.shape[1], -1, -1)
