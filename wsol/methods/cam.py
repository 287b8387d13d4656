"""CAM: the plain class-activation-map classifier (Zhou et al., CVPR 2016, arXiv 1512.04150)."""

from __future__ import annotations

from wsol.methods.base import WSOLModule
from wsol.methods.registry import register_method


@register_method
class CAM(WSOLModule):
    """Backbone + GAP + linear classifier trained with cross-entropy (or BCE for multi-label data).

    The class map of class ``c`` is ``M_c = W_c^T f(x, y)`` (Eq. (2) of the paper): the classifier
    applied at every location of the feature map. With a ``mixer`` it becomes MixUp/CutMix/... -CAM
    training; everything else (optimizers, EMA, label smoothing, L1/L2) is configured on the base.
    """
