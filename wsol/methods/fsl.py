"""FSL: the few-shot fully supervised localization baseline (Choe et al., CVPR 2020, arXiv 2001.07437; TPAMI 2022,
arXiv 2007.04178).

The localization-labelled images that WSOL methods spend on tuning (the ``train-fullsup`` split) are used to
*train* a localizer instead. Choe et al. report that this few-shot baseline beats every WSOL method they
evaluate; it is a reference row trained with boxes, never a WSOL method.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method
from wsol.models.fsl_net import FSLNet

__all__ = ["FSL", "boxes_to_mask"]


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Foreground mask ``(height, width)`` of the union of inclusive pixel boxes.

    A box ``(x0, y0, x1, y1)`` follows the inclusive convention of :mod:`wsol.data.schema`: integer boxes cover
    the pixels ``x0..x1`` and ``y0..y1``, both ends included. Boxes that went through a random resized crop
    carry fractional coordinates; for those, pixel ``u`` belongs to the box when its centre lies in the box's
    extent, ``x0 - 1/2 <= u < x1 + 1/2`` (likewise for rows), which reduces to the inclusive rule on integers.
    Parts outside the canvas are clipped away.

    Args:
        boxes: ``(n, 4)`` boxes ``x0, y0, x1, y1`` in pixels; ``n`` may be 0 (an all-background mask).
        height: mask height in pixels.
        width: mask width in pixels.

    Returns:
        A float mask on ``boxes``' device, 1 on the foreground and 0 elsewhere.

    Raises:
        ValueError: on a non-positive size, a tensor that is not ``(n, 4)``, non-finite coordinates, or a box
            with ``x1 < x0`` or ``y1 < y0``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {tuple(boxes.shape)}")
    boxes = boxes.detach().to(torch.float64)
    if not torch.isfinite(boxes).all():
        raise ValueError("boxes must have finite coordinates")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise ValueError(f"boxes need x0 <= x1 and y0 <= y1, got {boxes[bad].tolist()}")
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)
    in_x = (xs >= boxes[:, 0:1] - 0.5) & (xs < boxes[:, 2:3] + 0.5)  # (n, W)
    in_y = (ys >= boxes[:, 1:2] - 0.5) & (ys < boxes[:, 3:4] + 0.5)  # (n, H)
    return (in_y[:, :, None] & in_x[:, None, :]).any(dim=0).float()


@register_method
class FSL(WSOLModule):
    """A class-agnostic foreground localizer trained with box supervision, with a CAM head for top-1.

    The few-shot baseline of Choe et al. (arXiv 2007.04178, §"Few-shot learning baseline"): the same backbone
    as the WSOL methods, trained on the few fully supervised images with a per-pixel binary cross-entropy
    against the foreground mask (box interiors on box-only datasets); its score map is the foreground
    probability. Those are the parts we could confirm; the reference repository (clovaai/wsolevaluation)
    ships no code for this baseline, so the rest is our choice:

    * the foreground head is one 1x1 convolution to a single channel on the backbone's feature map (no
      extra layers), its logits upsampled bilinearly (``align_corners=False``) to the input before the loss;
    * the mask is built at the input resolution from the *augmented* boxes (:func:`boxes_to_mask`);
    * the base's CAM head is kept and trained with the usual classification loss (weight ``cls_weight``) only
      so that top-1 accuracy, and hence Top-1 Loc, are defined; it does not affect the score map.

    With features ``f`` and foreground head ``(w, b)``, ``s = Up(w^T f + b)`` on the ``H x W`` input and
    ``m = boxes_to_mask(boxes)``::

        L_fg  = -1 / (B H W) * sum_{i,u,v} [m log sigmoid(s) + (1 - m) log(1 - sigmoid(s))]
        L     = fg_weight * L_fg + cls_weight * L_cls

    ``L_cls`` is the base's cross-entropy (BCE when ``multilabel``). With ``cls_weight = 0`` the classifier is
    not trained (its parameters get no gradient) and top-1 is meaningless.

    The maps of :meth:`forward_with_cams` are the raw foreground logits ``w^T f + b`` at feature resolution,
    the same map for every class. The evaluator min-max normalises each map; since the sigmoid is strictly
    increasing, ``s`` and ``sigmoid(s)`` have the same level sets, so MaxBoxAcc over a fine threshold grid is
    the same for either (with the protocol's finite grid and bicubic upsampling before the normalisation they
    can differ slightly). Logits are returned because ``sigmoid`` saturates to exactly 1 in float32 for
    ``s > ~17``, which would flatten the top of a confident map.

    Training batches must carry boxes. An image whose box list is empty is all background: with single-label
    data that has a box per image (the tuning split), that only happens when the random crop cut the object out.
    Mixed-sample augmentation (``mixer``) is not supported, since mixing defines no mask target.

    Args:
        fg_weight: weight of the foreground BCE (> 0).
        cls_weight: weight of the classification loss (>= 0; 0 disables it).
        **kwargs: :class:`~wsol.methods.base.WSOLModule` arguments (backbone, num_classes, optimizer, ...).
    """

    def __init__(self, fg_weight: float = 1.0, cls_weight: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("mixer") is not None:
            raise ValueError("mixer is not supported by FSL: mixed images have no foreground mask")
        if not (math.isfinite(fg_weight) and fg_weight > 0):
            raise ValueError(f"fg_weight must be a finite number > 0, got {fg_weight}")
        if not (math.isfinite(cls_weight) and cls_weight >= 0):
            raise ValueError(f"cls_weight must be a finite number >= 0, got {cls_weight}")
        super().__init__(**kwargs)

    def build_network(self, backbone: nn.Module) -> FSLNet:
        return FSLNet(backbone, self.hparams.num_classes)

    # ------------------------------------------------------------------------------------- losses
    def foreground_masks(self, batch: dict[str, Any]) -> Tensor:
        """Foreground masks ``(B, H, W)`` of a batch at its input resolution.

        Raises:
            ValueError: if the batch carries no boxes.
        """
        images = batch["image"]
        boxes = batch.get("boxes")
        if boxes is None:
            raise ValueError("FSL needs boxes: the batch has no 'boxes'")
        if len(boxes) != images.shape[0]:
            raise ValueError(f"boxes has {len(boxes)} entries for a batch of {images.shape[0]} images")
        height, width = images.shape[-2:]
        masks = []
        for image_boxes in boxes:
            image_boxes = torch.as_tensor(image_boxes).reshape(-1, 4)
            # No box left: the training crop cut every object out, so the whole crop is background.
            masks.append(boxes_to_mask(image_boxes, height, width))
        return torch.stack(masks).to(device=images.device, dtype=images.dtype)

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """``fg_weight * L_fg + cls_weight * L_cls`` and the terms ``fg`` and ``cls`` (see the class docstring)."""
        hp = self.hparams
        images, targets = batch["image"], self.targets(batch)
        masks = self.foreground_masks(batch)
        logits, fg = self.net.fsl_forward(images)
        fg = F.interpolate(fg, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        fg_loss = F.binary_cross_entropy_with_logits(fg, masks)
        if hp.cls_weight > 0:
            cls = self.classification_loss(logits, targets)
            total = hp.fg_weight * fg_loss + hp.cls_weight * cls
        else:
            # Logged only: detached, so the classifier gets no gradient (nor weight decay from SGD).
            cls = self.classification_loss(logits.detach(), targets)
            total = hp.fg_weight * fg_loss
        return total, {"fg": fg_loss, "cls": cls}
