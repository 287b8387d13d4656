"""CAM inference for pseudo-masks: multi-scale + flip maps, normalisation, background score and argmax.

After SEAM's ``infer_SEAM.py`` (docs/methods.md §1.5, §14.7): every scale/flip pass is upsampled (bilinear,
``align_corners=False``) to the original image size and flipped back; the passes are combined, negatives
clipped, and each class map min-max normalised over space (SEAM's ``max_norm``,
:func:`wsol.models.pcm.relu_minmax`). The label map is the argmax over ``[t, cam_1, ..., cam_K]`` with a
constant background score ``t`` and only the image's classes competing. Everything here is pure torch, so it
runs batched on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.data.schema import IGNORE_INDEX
from wsol.models.cam_net import as_network

__all__ = [
    "SEAM_BG_THRESHOLD",
    "SEAM_SCALES",
    "CamFunction",
    "cam_function",
    "label_map",
    "multiscale_cams",
    "present_classes",
    "threshold_labels",
    "top_class",
]

#: SEAM's inference scales (``infer_SEAM.py``); each is run as is and flipped.
SEAM_SCALES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
#: SEAM's constant background score, ``out_cam_pred_alpha``.
SEAM_BG_THRESHOLD = 0.26

#: ``images (B, 3, H, W) -> (logits (B, K), maps (B, K, h, w))``.
CamFunction = Callable[[Tensor], tuple[Tensor, Tensor]]
Refine = Literal["auto", "none", "pcm"]


def cam_function(model: nn.Module, refine: Refine = "auto") -> CamFunction:
    """The map source of a trained model: its plain CAMs, or a SEAM model's PCM-refined maps.

    Args:
        model: a network (:class:`~wsol.models.cam_net.CAMNet`, ``forward_with_cams``) or a training system
            holding one; a SEAM network (:class:`~wsol.models.seam_net.SEAMNet`) also has ``seam_forward``.
        refine: ``"pcm"`` refines with the SEAM model's pixel correlation module, ``"none"`` uses the raw
            CAM, ``"auto"`` is ``"pcm"`` for a SEAM model (its inference maps) and ``"none"`` otherwise.

    Raises:
        ValueError: for ``"pcm"`` on a model without a PCM, or an unknown ``refine``.
    """
    if refine not in ("auto", "none", "pcm"):
        raise ValueError(f"refine must be 'auto', 'none' or 'pcm', got {refine!r}")
    model = as_network(model)
    has_pcm = hasattr(model, "seam_forward")
    if refine == "pcm" and not has_pcm:
        raise ValueError(f"PCM refinement needs a SEAM model, got {type(model).__name__}")
    if has_pcm and refine != "none":

        def pcm_maps(x: Tensor) -> tuple[Tensor, Tensor]:
            logits, _, refined = model.seam_forward(x)
            return logits, refined[:, 1:]  # channel 0 is the PCM's background

        return pcm_maps
    if has_pcm:

        def raw_maps(x: Tensor) -> tuple[Tensor, Tensor]:
            logits, cams, _ = model.seam_forward(x)
            return logits, cams

        return raw_maps
    return model.forward_with_cams


@torch.no_grad()
def multiscale_cams(
    cam_fn: CamFunction,
    image: Tensor,
    scales: Sequence[float] = SEAM_SCALES,
    flip: bool = True,
    out_size: tuple[int, int] | None = None,
    select: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Average of one image's maps over scales and horizontal flips, at the output size.

    The average differs from SEAM's sum only by a constant factor, which the min-max normalisation removes.

    Args:
        cam_fn: the map source (see :func:`cam_function`).
        image: one normalised image ``(3, H, W)`` or ``(1, 3, H, W)``.
        scales: input scales relative to ``(H, W)``; each pass sees ``round(H * s) x round(W * s)``.
        flip: add a horizontally flipped pass per scale (flipped back before averaging).
        out_size: ``(height, width)`` of the maps, by default ``(H, W)``.
        select: maps the mean logits ``(K,)`` to the indices of the classes whose maps are wanted (all when
            None). Only those are upsampled, which matters with many classes at full image size (COCO's 80
            at 640 px would be ~130 MB per pass).

    Returns:
        Mean logits ``(K,)`` over the passes and mean maps ``(k, *out_size)`` of the selected classes (not
        normalised).
    """
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive and non-empty, got {tuple(scales)}")
    height, width = image.shape[-2:]
    out_size = (height, width) if out_size is None else tuple(out_size)
    passes: list[tuple[Tensor, Tensor]] = []
    for s in scales:
        size = (max(1, round(height * s)), max(1, round(width * s)))
        x = image
        if size != (height, width):
            # Antialiasing on downscaling, as the PIL resize of the reference code does.
            x = F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=s < 1)
        passes.append(cam_fn(torch.cat([x, x.flip(-1)]) if flip else x))
    logits = torch.cat([p[0].float() for p in passes]).mean(0)
    classes = slice(None) if select is None else torch.as_tensor(select(logits), device=logits.device).long()
    total, count = None, 0
    for _, maps in passes:
        maps = F.interpolate(maps[:, classes].float(), out_size, mode="bilinear", align_corners=False)
        if flip:
            maps = torch.stack([maps[0], maps[1].flip(-1)])
        total = maps.sum(0) if total is None else total + maps.sum(0)
        count += maps.shape[0]
    return logits, total / count


def present_classes(
    logits: Tensor,
    labels: Sequence[int] | None = None,
    multilabel: bool = True,
    threshold: float = 0.5,
) -> Tensor:
    """Boolean ``(K,)`` mask of the classes allowed in an image's label map.

    SEAM evaluates on the training set with the GT image labels; without them (val/test images) the
    model's own prediction decides: sigmoid scores above ``threshold`` for a multi-label model (the top
    class if none passes), the softmax top-1 for a single-label one.

    Args:
        logits: ``(K,)`` image logits.
        labels: GT class indices, or None to use the prediction.
        multilabel: whether the model was trained with sigmoid BCE.
        threshold: sigmoid threshold of a multi-label prediction.
    """
    k = logits.shape[-1]
    present = torch.zeros(k, dtype=torch.bool, device=logits.device)
    if labels is not None:
        labels = [int(c) for c in labels]
        if labels and (min(labels) < 0 or max(labels) >= k):
            raise ValueError(f"labels {labels} out of range for {k} classes")
        present[labels] = True
        return present
    if multilabel:
        present = torch.sigmoid(logits) > threshold
    if not present.any():
        present[logits.argmax()] = True
    return present


def top_class(maps: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel best score and its label ``c + 1`` over the maps of some classes.

    Args:
        maps: normalised maps ``(k, H, W)`` of the classes ``classes`` only (absent ones never compete).
        classes: ``(k,)`` ascending class indices; a tie goes to the lowest index, as with ``np.argmax``.

    Returns:
        ``(best, label)``, both ``(H, W)``; with ``k == 0`` the score is ``-inf`` and the label 0.
    """
    if maps.shape[0] == 0:
        shape = maps.shape[1:]
        return maps.new_full(shape, float("-inf")), torch.zeros(shape, dtype=torch.long, device=maps.device)
    best, index = maps.max(dim=0)
    return best, classes.to(maps.device).long()[index] + 1


def threshold_labels(
    best: Tensor, label: Tensor, bg_threshold: float = SEAM_BG_THRESHOLD, ignore_threshold: float | None = None
) -> Tensor:
    """The uint8 label map of :func:`top_class`'s output against a constant background score.

    Pixels whose best score exceeds ``bg_threshold`` keep their label, the others are background (0); with
    ``ignore_threshold``, the background pixels scoring above it become 255 (IRN's confident foreground /
    background split, leaving the uncertain band to the segmentation trainer's ignore index).
    """
    if ignore_threshold is not None and ignore_threshold >= bg_threshold:
        raise ValueError(f"ignore_threshold ({ignore_threshold}) must be below bg_threshold ({bg_threshold})")
    out = torch.where(best > bg_threshold, label, torch.zeros_like(label))
    if ignore_threshold is not None:
        out = torch.where((out == 0) & (best > ignore_threshold), torch.full_like(label, IGNORE_INDEX), out)
    return out.to(torch.uint8)


def label_map(
    maps: Tensor,
    present: Tensor,
    bg_threshold: float = SEAM_BG_THRESHOLD,
    ignore_threshold: float | None = None,
) -> Tensor:
    """Argmax over ``[bg_threshold, maps of the present classes]`` as a uint8 label map ``(H, W)``.

    Values: 0 background, ``c + 1`` class ``c`` and, with ``ignore_threshold``, 255 in the uncertain band
    (see :func:`threshold_labels`). A tie between a class and the background goes to the background, as
    ``np.argmax`` over ``[bg, cams]`` does in SEAM.

    Args:
        maps: normalised maps ``(K, H, W)`` (see :func:`wsol.models.pcm.relu_minmax`).
        present: boolean ``(K,)`` mask of the classes allowed (see :func:`present_classes`).
        bg_threshold: constant background score.
        ignore_threshold: lower background score bounding the ignored band, or None for no ignore.
    """
    if maps.ndim != 3 or present.shape != maps.shape[:1]:
        raise ValueError(f"expected maps (K, H, W) and present (K,), got {tuple(maps.shape)}, {tuple(present.shape)}")
    if maps.shape[0] >= IGNORE_INDEX:
        raise ValueError(f"{maps.shape[0]} classes do not fit a uint8 label map with {IGNORE_INDEX} as ignore")
    present = present.to(maps.device)
    best, label = top_class(maps[present], present.nonzero().flatten())
    return threshold_labels(best, label, bg_threshold, ignore_threshold)
