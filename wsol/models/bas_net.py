"""BAS's network: a classifier plus a generator of one foreground map per class.

Wu, Zhai & Cao, CVPR 2022 (arXiv 2112.00580); see :mod:`wsol.methods.bas` for the sources and the training system.
Two layouts share this class:

* the first one written here (the defaults): the generator (conv3x3-ReLU-conv1x1-sigmoid) and the linear CAM head
  both read the backbone's final features;
* the authors' layout, where it fits a ``wsol`` backbone: ``mask_stage="penultimate"`` puts the generator on the
  features *before* the last stage (stage 3 of a ResNet, twice the final resolution at the usual strides),
  ``generator="one_conv"`` makes it one 3x3 convolution plus sigmoid, and ``class_head="conv"`` replaces the linear
  head by conv3x3-ReLU-conv3x3-ReLU-conv1x1-ReLU, whose logits are the GAP of non-negative class maps.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from wsol.models.acol_net import ConvClassifier
from wsol.models.cam_net import CAMNet
from wsol.models.head import CAMHead
from wsol.models.stages import split_last_stage, stage_in_channels

__all__ = [
    "BASNet",
    "ForegroundGenerator",
    "ReLUConvClassifier",
    "topk_mean_map",
]

MaskStage = Literal["last", "penultimate"]
GeneratorKind = Literal["two_conv", "one_conv"]
ClassHeadKind = Literal["linear", "conv"]


def topk_mean_map(maps: Tensor, logits: Tensor, k: int) -> Tensor:
    """The BAS inference map ``(B, h, w)``: the mean of the maps ``(B, K, h, w)`` of the ``k`` top-scoring classes."""
    if not 1 <= k <= maps.shape[1]:
        raise ValueError(f"k must be in [1, {maps.shape[1]}], got {k}")
    top = logits.topk(k, dim=1).indices
    return maps.gather(1, top[:, :, None, None].expand(-1, -1, *maps.shape[2:])).mean(dim=1)


class ForegroundGenerator(nn.Module):
    """The foreground prediction map generator: one map in [0, 1] per class.

    Args:
        in_channels: channels of the feature map it reads.
        hidden_channels: width of the 3x3 convolution of the two-layer form.
        num_classes: number of classes K.
        kind: ``"two_conv"``, conv3x3-ReLU-conv1x1-sigmoid (He-initialised first layer), or ``"one_conv"``, one 3x3
            convolution to K maps plus sigmoid (the authors' generator; Xavier-initialised, zero bias).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int, num_classes: int, kind: GeneratorKind = "two_conv"
    ) -> None:
        super().__init__()
        if kind == "two_conv":
            self.layers = nn.Sequential(
                nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden_channels, num_classes, 1),
            )
            nn.init.kaiming_normal_(self.layers[0].weight, mode="fan_out", nonlinearity="relu")
        elif kind == "one_conv":
            self.layers = nn.Sequential(nn.Conv2d(in_channels, num_classes, 3, padding=1))
            nn.init.xavier_uniform_(self.layers[0].weight)
        else:
            raise ValueError(f"generator must be 'two_conv' or 'one_conv', got {kind!r}")
        nn.init.zeros_(self.layers[0].bias)

    def forward(self, features: Tensor) -> Tensor:
        """Foreground maps ``(B, K, h, w)`` in [0, 1]."""
        return torch.sigmoid(self.layers(features))


class ReLUConvClassifier(ConvClassifier):
    """The authors' BAS classifier: conv3x3-ReLU-conv3x3-ReLU-conv1x1-ReLU; logits are the GAP of the ReLU'd maps.

    The logits are never negative, so the activation ``S = GAP(ReLU(map_c))`` needs no ReLU of its own.
    """

    def class_maps(self, features: Tensor) -> Tensor:
        """Non-negative class maps ``(B, K, h, w)``."""
        return super().class_maps(features).relu()


class BASNet(CAMNet):
    """Backbone, classifier head (the logits) and :class:`ForegroundGenerator` (the localization maps).

    The maps of ``forward_with_cams`` are the generator's, of every class (``inference_topk = 1``) or the mean of the
    top-k predicted classes' maps in every channel (the paper's inference); with ``mask_stage="penultimate"`` they
    have the resolution of the features before the last stage.

    Args:
        backbone: a :class:`~wsol.models.Backbone` (``mask_stage="penultimate"`` needs one that
            :func:`~wsol.models.stages.split_last_stage` can cut, e.g. a ResNet).
        num_classes: K.
        generator_channels: width of the two-layer generator's 3x3 convolution; None for ``min(C, 512)`` with ``C``
            the channels it reads.
        inference_topk: number of most probable classes whose maps are averaged at inference.
        mask_stage: ``"last"``: the generator reads the final features; ``"penultimate"``: the features before the
            last stage.
        generator: ``"two_conv"`` or ``"one_conv"`` (:class:`ForegroundGenerator`).
        class_head: ``"linear"`` (:class:`~wsol.models.head.CAMHead`) or ``"conv"`` (:class:`ReLUConvClassifier`).
        class_head_channels: width of the conv head's 3x3 convolutions; None for half the backbone's channels
            (the authors' 1024 of ResNet-50's 2048).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        generator_channels: int | None = None,
        inference_topk: int = 1,
        mask_stage: MaskStage = "last",
        generator: GeneratorKind = "two_conv",
        class_head: ClassHeadKind = "linear",
        class_head_channels: int | None = None,
    ) -> None:
        if not 1 <= inference_topk <= num_classes:
            raise ValueError(f"inference_topk must be in [1, num_classes={num_classes}], got {inference_topk}")
        if mask_stage not in ("last", "penultimate"):
            raise ValueError(f"mask_stage must be 'last' or 'penultimate', got {mask_stage!r}")
        channels = backbone.out_channels
        if class_head == "linear":
            head: nn.Module = CAMHead(channels, num_classes)
        elif class_head == "conv":
            head = ReLUConvClassifier(channels, class_head_channels or max(1, channels // 2), num_classes)
        else:
            raise ValueError(f"class_head must be 'linear' or 'conv', got {class_head!r}")
        super().__init__(backbone, head)
        mask_channels = channels
        if mask_stage == "penultimate":
            mask_channels = stage_in_channels(split_last_stage(backbone)[1])
        self.mask_stage = mask_stage
        self.generator = ForegroundGenerator(
            mask_channels, generator_channels or min(mask_channels, 512), num_classes, generator
        )
        self.inference_topk = int(inference_topk)

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The classifier head and the foreground generator."""
        return (self.head, self.generator)

    def last_stage(self) -> nn.Module:
        """The backbone's last stage (:func:`~wsol.models.stages.split_last_stage`)."""
        return split_last_stage(self.backbone)[1]

    def stages(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The generator's input and the final features ``(B, C, h, w)`` of images ``x``, from one backbone pass
        (the same tensor twice with ``mask_stage="last"``)."""
        if self.mask_stage == "last":
            features = self.features(x)
            return features, features
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        trunk, last = split_last_stage(self.backbone)
        before = trunk(x)
        return before, last(before)

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The head's logits on the final features and the generator's maps ``(B, K, h, w)`` in [0, 1]."""
        mask_input, features = self.stages(x)
        logits, maps = self.head(features), self.generator(mask_input)
        if self.inference_topk > 1:
            maps = topk_mean_map(maps, logits, self.inference_topk)[:, None].expand_as(maps).contiguous()
        return logits, maps
