"""Score-CAM: channel weights from the class score of the input masked by each channel (arXiv 1910.01279)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.cams.base import CAMInputs, CAMMethod, register_cam


@register_cam("scorecam")
class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al., CVPRW 2020): ``ReLU(sum_k s_k A_k)`` with gradient-free weights.

    Each channel ``A_k`` is upsampled (bilinear) to the input size and min-max normalised into a mask
    ``H_k``; its weight is the softmax probability of the target class for the masked input
    ``X * H_k`` (the paper's "increase of confidence", computed as its official code does, without a
    baseline subtraction). Channels with a constant map get weight 0. The ``B x C`` masked forward passes
    run in batches of ``batch_size`` without autograd, so the cost is about ``C / batch`` forward passes
    per image; the map stays differentiable through ``A`` when asked.

    Args:
        model: the classifier (in eval mode: masked passes in train mode would update batch-norm
            statistics).
        target_layer: see :class:`CAMMethod`.
        batch_size: masked images per forward pass.
    """

    uses_gradients = False

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None, batch_size: int = 64) -> None:
        super().__init__(model, target_layer)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def weights(self, inputs: CAMInputs) -> Tensor:
        return self._scores(inputs.activations, inputs.images, inputs.targets[:, None])[..., 0]

    def class_maps(self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor) -> Tensor:
        # One sweep of masked passes serves every target: the softmax holds all classes.
        scores = self._scores(activations, images, targets)  # (B, C, T)
        return torch.relu(torch.einsum("bct,bchw->bthw", scores, activations))

    def _scores(self, activations: Tensor, images: Tensor, targets: Tensor) -> Tensor:
        """``(B, C, T)`` target-class probabilities of the images masked by each channel."""
        batch, channels = activations.shape[:2]
        with torch.no_grad():
            masks = F.interpolate(activations.detach(), size=images.shape[-2:], mode="bilinear", align_corners=False)
            lo = masks.amin(dim=(2, 3), keepdim=True)
            span = masks.amax(dim=(2, 3), keepdim=True) - lo
            masks = torch.where(span > 0, (masks - lo) / torch.where(span > 0, span, 1.0), 0.0)
            scores = torch.empty(batch * channels, targets.shape[1], device=images.device, dtype=images.dtype)
            image_of = torch.arange(batch, device=images.device).repeat_interleave(channels)
            flat = masks.flatten(0, 1)  # (B*C, H, W)
            for start in range(0, batch * channels, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, batch * channels), device=images.device)
                masked = images[image_of[idx]] * flat[idx, None]
                probs = self.model(masked).softmax(dim=1)
                scores[idx] = probs.gather(1, targets[image_of[idx]])
        return scores.view(batch, channels, -1)
