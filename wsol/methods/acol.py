"""ACoL: adversarial complementary learning (Zhang et al., CVPR 2018, arXiv 1804.06962).

Behaviour and defaults follow the re-implementation in the WSOL evaluation benchmark of Choe et al.
("Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020, arXiv 2001.07437).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.acol_net import ACoLNet, ConvClassifier, acol_keep_mask, combine_maps, minmax_normalize

__all__ = ["ACoL", "ConvClassifier", "acol_keep_mask", "combine_maps", "minmax_normalize"]


@register_method
class ACoL(WSOLModule):
    """Two classifiers on the backbone features; B sees the features with A's object region erased.

    With backbone features ``S``, classifier A gives maps ``M_A = A(S)`` and logits ``GAP(M_A)``. The map of the
    target class ``c`` (the ground truth in training, A's prediction otherwise) is min-max normalised and every
    position where it reaches ``acol_threshold`` is zeroed in ``S``; classifier B gives ``M_B = B(S_erased)``.
    Training minimises ``CE(GAP(M_A), y) + CE(GAP(M_B), y)`` (both with the base's label smoothing), so B must
    find complementary object parts (arXiv 1804.06962, Sec. 3). The localization map of every class is
    ``max(M~_A, M~_B)`` (normalised maps, max fusion); the model's logits are A's, as in the benchmark.

    The network is :class:`~wsol.models.acol_net.ACoLNet`: its head is classifier A, so ``forward`` returns A's
    logits. Each classifier is the benchmark's
    conv3x3-ReLU-conv3x3-ReLU-conv1x1 stack, but ``head_channels`` wide instead of 1024 (the benchmark sizes it
    for ResNet50's 2048 channels; by default here it is the backbone's own channel count). Both classifiers
    train at ``lr * head_lr_mult``.

    ``forward_with_cams`` (export, maps of every class) erases with A's predicted class; the map of a given class
    (``cams(x, classes)``, which validation, ``wsol predict``, the study and ``wsol cams --cam-method native`` all
    score) erases with that class, as the benchmark's evaluation does with the ground-truth label.

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

    def build_network(self, backbone: nn.Module) -> ACoLNet:
        hp = self.hparams
        return ACoLNet(backbone, hp.num_classes, hp.head_channels, hp.acol_threshold)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``CE(A) + CE(B)``, logged as ``cls`` (classifier A) and ``cls_b``."""
        images, targets = batch["image"], self.targets(batch)
        logits_a, logits_b, _, _ = self.net.acol_forward(images, targets.argmax(dim=1))
        cls_a = self.classification_loss(logits_a, targets)
        cls_b = self.classification_loss(logits_b, targets)
        return cls_a + cls_b, {"cls": cls_a, "cls_b": cls_b}
