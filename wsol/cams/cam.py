"""Post-hoc CAM (``PlainCAM``, registered as ``cam``): the classifier's own weights (Zhou et al., CVPR 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from wsol.cams.base import CAMInputs, CAMMethod, register_cam


@register_cam("cam")
class PlainCAM(CAMMethod):
    """Class activation map ``M_c(x, y) = sum_k w_k^c f_k(x, y)`` (Eq. (2) of arXiv 1512.04150).

    ``w^c`` is row ``c`` of the linear classifier that follows global average pooling, so the map needs
    no gradient and no extra pass: it works under ``torch.inference_mode``, and all classes come from
    one matrix product. No bias and no ReLU, as in the paper and the reference evaluator (whose CAM is
    the channel *mean*, a scale that the min-max normalisation removes).
    """

    uses_gradients = False
    relu = False

    def weights(self, inputs: CAMInputs) -> Tensor:
        return self.classifier_weight(inputs.activations.shape[1])[inputs.targets]

    def class_maps(self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor) -> Tensor:
        weight = self.classifier_weight(activations.shape[1])
        if targets.shape[1] > 1 and bool((targets == targets[:1]).all()):
            # The same classes for every image ("all"): one GEMM against the shared rows, no per-image copy.
            return torch.einsum("tc,bchw->bthw", weight[targets[0]], activations)
        return torch.einsum("btc,bchw->bthw", weight[targets], activations)
