"""ACoL: adversarial complementary learning (Zhang et al., CVPR 2018, arXiv 1804.06962).

Behaviour and defaults follow the re-implementation in the WSOL evaluation benchmark of Choe et al.
("Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020, arXiv 2001.07437).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method

__all__ = ["ACoL", "ConvClassifier", "acol_keep_mask", "combine_maps", "minmax_normalize"]


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
    the last layer's ``(K, hidden, 1, 1)`` kernel), so it can serve as ``WSOLModule.head``. He-initialised.

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


@register_method
class ACoL(WSOLModule):
    """Two classifiers on the backbone features; B sees the features with A's object region erased.

    With backbone features ``S``, classifier A gives maps ``M_A = A(S)`` and logits ``GAP(M_A)``. The map of the
    target class ``c`` (the ground truth in training, A's prediction otherwise) is min-max normalised and every
    position where it reaches ``acol_threshold`` is zeroed in ``S``; classifier B gives ``M_B = B(S_erased)``.
    Training minimises ``CE(GAP(M_A), y) + CE(GAP(M_B), y)`` (both with the base's label smoothing), so B must
    find complementary object parts (arXiv 1804.06962, Sec. 3). The localization map of every class is
    ``max(M~_A, M~_B)`` (normalised maps, max fusion); the model's logits are A's, as in the benchmark.

    ``self.head`` is classifier A, so the base's ``forward`` returns A's logits. Each classifier is the benchmark's
    conv3x3-ReLU-conv3x3-ReLU-conv1x1 stack, but ``head_channels`` wide instead of 1024 (the benchmark sizes it
    for ResNet50's 2048 channels; by default here it is the backbone's own channel count). Both classifiers
    train at ``lr * head_lr_mult``.

    ``forward_with_cams`` (validation, export) erases with A's predicted class, so for a misclassified image B's
    map of the true class is computed on features erased elsewhere; ``cams(x, classes)`` erases with the given
    classes, as the benchmark's evaluation does with the ground-truth label.

    Args:
        acol_threshold: erasing threshold delta on A's normalised map, in (0, 1] (0.7 in the benchmark).
        head_channels: width of each classifier's 3x3 convolutions; None for the backbone's channel count.
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, ...). ``mixer`` and
            ``multilabel`` are not supported: erasing is driven by one class per image.
    """

    def __init__(self, acol_threshold: float = 0.7, head_channels: int | None = None, **kwargs: Any) -> None:
        if not 0.0 < acol_threshold <= 1.0:
            raise ValueError(f"acol_threshold must be in (0, 1], got {acol_threshold}")
        if head_channels is not None and head_channels < 1:
            raise ValueError(f"head_channels must be >= 1 or None, got {head_channels}")
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by ACoL: erasing follows one class per image")
        if kwargs.get("multilabel"):
            raise ValueError("multilabel is not supported by ACoL: erasing follows one class per image")
        super().__init__(**kwargs)
        channels, k = self.backbone.out_channels, self.hparams.num_classes
        hidden = head_channels or channels
        self.head = ConvClassifier(channels, hidden, k)  # classifier A
        self.classifier_b = ConvClassifier(channels, hidden, k)

    def acol_forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Logits of A and B ``(B, K)`` and their maps ``(B, K, h, w)``; erasing by ``labels`` or A's prediction."""
        features = self.features(x)
        maps_a = self.head.class_maps(features)
        logits_a = maps_a.mean(dim=(2, 3))
        if labels is None:
            labels = logits_a.argmax(dim=1)
        maps_b = self.classifier_b.class_maps(features * acol_keep_mask(maps_a, labels, self.hparams.acol_threshold))
        return logits_a, maps_b.mean(dim=(2, 3)), maps_a, maps_b

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A's logits and the fused maps ``max(M~_A, M~_B)`` of every class (erasing by A's prediction)."""
        logits_a, _, maps_a, maps_b = self.acol_forward(x)
        return logits_a, combine_maps(maps_a, maps_b)

    def cams(self, x: Tensor, classes: Tensor | None = None) -> Tensor:
        """As the base, but with ``classes`` given, B's features are erased by those classes (the benchmark's way)."""
        if classes is None:
            return super().cams(x)
        labels = torch.as_tensor(classes, device=x.device).long().reshape(-1)
        k = self.hparams.num_classes
        if labels.numel() != x.shape[0]:
            raise ValueError(f"classes has {labels.numel()} entries for a batch of {x.shape[0]} images")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class indices must lie in [0, {k - 1}], got {labels.tolist()}")
        _, _, maps_a, maps_b = self.acol_forward(x, labels)
        return combine_maps(maps_a, maps_b)[torch.arange(x.shape[0], device=x.device), labels]

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``CE(A) + CE(B)``, logged as ``cls`` (classifier A) and ``cls_b``."""
        images, targets = batch["image"], self.targets(batch)
        logits_a, logits_b, _, _ = self.acol_forward(images, targets.argmax(dim=1))
        cls_a = self.classification_loss(logits_a, targets)
        cls_b = self.classification_loss(logits_b, targets)
        return cls_a + cls_b, {"cls": cls_a, "cls_b": cls_b}

    def head_modules(self) -> tuple[nn.Module, ...]:
        """Classifier A (the head) and classifier B."""
        return (self.head, self.classifier_b)
