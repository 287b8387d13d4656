"""The training method's own maps: what each :mod:`wsol.methods` class localizes with.

Most training methods localize with the classifier's CAM, which :class:`~wsol.cams.cam.CAM` computes from the
head's weights. Some do not: SEAM refines its maps with PCM, ACoL fuses two classifiers' maps (erasing by the
class asked for), BAS reads a foreground generator and the few-shot FSL row a class-agnostic foreground map.
``native`` asks the model itself, through ``cams(images, classes)`` (or ``forward_with_cams`` for every class),
so a checkpoint of any method is scored with the maps its validation metric and its export use.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsol.cams.base import CAMMethod, CAMResult, Targets, _resolve_targets, register_cam


@register_cam("native")
class NativeCAM(CAMMethod):
    """Maps from the model's own ``cams`` / ``forward_with_cams`` (a wsol network or training method).

    ``target_layer`` and ``classifier`` are not used: the method decides where its maps come from.
    """

    uses_gradients = False
    relu = False

    def _run(self, images: Tensor, targets: Targets, differentiable: bool) -> CAMResult:
        forward = getattr(self.model, "forward_with_cams", None)
        if forward is None:
            raise ValueError(
                f"'native' maps need a wsol training method (forward_with_cams); {type(self.model).__name__} has none"
            )
        logits, maps = forward(images)
        target_idx, squeeze = _resolve_targets(targets, logits)
        from wsol.models.cam_net import CAMNet, as_network

        net = as_network(self.model)
        own_maps = getattr(type(net), "logits_and_cams", CAMNet.logits_and_cams) is not CAMNet.logits_and_cams
        if own_maps and target_idx.shape[1] < maps.shape[1]:
            # The network's map depends on the class asked for (ACoL erases by it): the map validation and the
            # study score, one call per column.
            chosen = torch.stack([net.logits_and_cams(images, column)[1] for column in target_idx.T], dim=1)
        else:
            rows = torch.arange(len(logits), device=logits.device)[:, None]
            chosen = maps[rows, target_idx]
        if not differentiable:
            chosen, logits = chosen.detach(), logits.detach()
        return CAMResult(chosen[:, 0] if squeeze else chosen, logits)
