"""The plain CAM network: a backbone and a head, with the maps of every class from one pass.

Training systems (:mod:`wsol.methods`) hold one of these networks plus their losses and optimizers; export,
post-hoc CAMs and WSSS need only the network (:func:`wsol.load_model` returns it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsol.models.contract import backbone_contract

__all__ = ["CAMNet", "as_network", "select_classes"]


def select_classes(classes: Tensor | list[int], batch: int, num_classes: int, device: torch.device) -> Tensor:
    """``classes`` as a ``(batch,)`` long tensor on ``device``, checked against the batch and the class count.

    Raises:
        ValueError: if the count differs from the batch or an index lies outside ``[0, num_classes)``.
    """
    labels = torch.as_tensor(classes, device=device).long().reshape(-1)
    if labels.numel() != batch:
        raise ValueError(f"classes has {labels.numel()} entries for a batch of {batch} images")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes - 1}], got {labels.tolist()}")
    return labels


class CAMNet(nn.Module):
    """Backbone + head: ``forward`` gives logits, ``forward_with_cams`` the logits and every class's map.

    Subclasses change how the maps are made (e.g. :class:`~wsol.models.seam_net.SEAMNet` refines them with a
    pixel correlation module); every network keeps this interface, which is all that export, ``wsol cams`` and
    WSSS use.

    Args:
        backbone: a module keeping the backbone contract (:mod:`wsol.models.contract`).
        head: a module with ``forward(features) -> logits (B, K)``, ``class_maps(features) -> (B, K, h, w)`` and a
            ``weight`` whose first dimension is K (:class:`~wsol.models.head.CAMHead`).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        backbone_contract(backbone)
        self.backbone = backbone
        self.head = head
        #: How the logits are read: independent sigmoids (multi-label) or one softmax. Set by the training system.
        self.multilabel = False

    @property
    def num_classes(self) -> int:
        """K, the head's number of classes."""
        return int(self.head.weight.shape[0])

    def new_modules(self) -> tuple[nn.Module, ...]:
        """The modules on top of the backbone (trained at the head's learning-rate multiplier)."""
        return (self.head,)

    def features(self, x: Tensor) -> Tensor:
        """Backbone feature map ``(B, C, h, w)``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, K)``."""
        return self.head(self.features(x))

    def forward_with_cams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, K)`` and every class's map ``(B, K, h, w)`` from one backbone pass."""
        maps = self.head.class_maps(self.features(x))
        return maps.mean(dim=(2, 3)), maps

    def logits_and_cams(self, x: Tensor, classes: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """Logits ``(B, K)`` and the raw map of each image's class ``(B, h, w)``, from one pass.

        The one map every scorer reads for an image of a known class: validation's ``val/MaxBoxAccV2``,
        ``wsol predict``, the study and ``wsol cams --cam-method native``. A network whose map depends on the class
        asked for (ACoL erases by it) overrides this, and every scorer follows.
        """
        logits, maps = self.forward_with_cams(x)
        labels = select_classes(classes, maps.shape[0], maps.shape[1], maps.device)
        return logits, maps[torch.arange(maps.shape[0], device=maps.device), labels]

    def cams(self, x: Tensor, classes: Tensor | list[int] | None = None) -> Tensor:
        """Raw class activation maps at feature resolution.

        Args:
            x: images ``(B, 3, H, W)``.
            classes: ``(B,)`` class index per image, or ``None`` for all classes.

        Returns:
            ``(B, K, h, w)`` when ``classes`` is None, else ``(B, h, w)`` (:meth:`logits_and_cams`'s maps).
        """
        if classes is None:
            return self.forward_with_cams(x)[1]
        return self.logits_and_cams(x, classes)[1]


def as_network(model: nn.Module) -> nn.Module:
    """The plain network of a training system (its ``net``), or ``model`` itself when it is one already."""
    net = getattr(model, "net", None)
    return net if isinstance(net, nn.Module) and hasattr(net, "forward_with_cams") else model
