"""ACoL's network: classifier A on the backbone features, classifier B on the features A's map leaves.

Zhang et al., CVPR 2018 (arXiv 1804.06962), as re-implemented in the WSOL evaluation benchmark of Choe et al.
(CVPR 2020, arXiv 2001.07437). The training system is :class:`wsol.methods.ACoL`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsol.models.cam_net import CAMNet, select_classes

__all__ = ["ACoLNet", "ConvClassifier", "acol_keep_mask", "combine_maps", "minmax_normalize"]


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """``(M - min M) / (max M - min M)`` per image and channel over the positions of ``(B, C, h, w)`` maps.

    No ReLU first (as the benchmark); a constant map becomes 0 instead of the benchmark's NaN.
    """
    flat = maps.flatten(2)
    lo, hi = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def acol_keep_mask(maps: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """ACoL's erasing mask ``(B, 1, h, w)``: 0 where classifier A finds the object, 1 elsewhere.

    The map of class ``labels[b]`` is min-max normalised (``M~``) and every position with ``M~ >= threshold``
    (the paper's delta) is erased. The mask is computed from detached maps, so no gradient flows through it.
    """
    attention = maps.detach()[torch.arange(maps.shape[0], device=maps.device), labels].unsqueeze(1)
    return (minmax_normalize(attention) < threshold).to(maps.dtype)


def combine_maps(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """The fused localization map, ``max(M~_A, M~_B)`` element-wise over min-max normalised maps of each class."""
    return torch.maximum(minmax_normalize(maps_a), minmax_normalize(maps_b))


class ConvClassifier(nn.Module):
    """ACoL's classifier branch: conv3x3-ReLU-conv3x3-ReLU-conv1x1 to K maps, logits by GAP of the maps.

    Same interface as :class:`~wsol.models.head.CAMHead` (``forward`` gives logits, ``class_maps`` the maps, ``weight``
    the last layer's ``(K, hidden, 1, 1)`` kernel), so it can serve as a :class:`~wsol.models.cam_net.CAMNet` head.
    He-initialised.

    Args:
        in_channels: channels of the backbone's feature map.
        hidden_channels: width of the two 3x3 convolutions (1024 in the benchmark's ResNet50 heads).
        num_classes: number of classes K.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, num_classes, 1),
        )
        for m in self.layers.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def weight(self) -> Tensor:
        """The last (1x1) convolution's kernel; its first dimension is K."""
        return self.layers[-1].weight

    def class_maps(self, features: Tensor) -> Tensor:
        """Class maps ``(B, K, h, w)``."""
        return self.layers(features)

    def forward(self, features: Tensor) -> Tensor:
        """Logits ``(B, K)``: the GAP of the class maps."""
        return self.class_maps(features).mean(dim=(2, 3))


class ACoLNet(CAMNet):
    """Classifier A (the head) and classifier B, B seeing the features erased where A's map of a class is high.

    ``forward`` and the logits are A's. ``forward_with_cams`` erases with A's predicted class and returns the fused
    maps ``max(M~_A, M~_B)`` of every class; ``logits_and_cams(x, classes)`` and ``cams(x, classes)`` erase with the
    given classes (the benchmark's evaluation, with the ground-truth label).

    Args:
        backbone: a :class:`~wsol.models.Backbone`.
        num_classes: K.
        hidden_channels: width of each classifier's 3x3 convolutions; None for the backbone's channel count.
        threshold: erasing threshold delta on A's normalised map, in (0, 1].
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, hidden_channels: int | None = None, threshold: float = 0.7
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        channels = backbone.out_channels
        hidden = hidden_channels or channels
        super().__init__(backbone, ConvClassifier(channels, hidden, num_classes))
        self.classifier_b = ConvClassifier(channels, hidden, num_classes)
        self.threshold = float(threshold)

    def new_modules(self) -> tuple[nn.Module, ...]:
        """Classifier A (the head) and classifier B."""
        return (self.head, self.classifier_b)

    def acol_forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits of A and B ``(B, K)`` and their maps ``(B, K, h, w)``; erasing by ``labels`` or A's prediction."""
        features = self.features(x)
        maps_a = self.head.class_maps(features)
        logits_a = maps_a.mean(dim=(2, 3))
        if labels is None:
            labels = logits_a.argmax(dim=1)
        maps_b = self.classifier_b.class_maps(features * acol_keep_mask(maps_a, labels, self.threshold))
        return logits_a, maps_b.mean(dim=(2, 3)), maps_a, maps_b

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A's logits and the fused maps ``max(M~_A, M~_B)`` of every class (erasing by A's prediction)."""
        logits_a, _, maps_a, maps_b = self.acol_forward(x)
        return logits_a, combine_maps(maps_a, maps_b)

    def logits_and_cams(self, x: Tensor, classes: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """A's logits and the fused map of each image's class, B's features erased by that class (the benchmark's
        evaluation, with the ground-truth label); what validation, the study and ``native`` all score."""
        labels = select_classes(classes, x.shape[0], self.num_classes, x.device)
        logits_a, _, maps_a, maps_b = self.acol_forward(x, labels)
        return logits_a, combine_maps(maps_a, maps_b)[torch.arange(x.shape[0], device=x.device), labels]
