"""Label-free saliency cues: maps that need no labels and no training, the baselines a WSOL map must beat.

Each cue maps one ``(H, W, 3)`` uint8 RGB image to an ``(H, W)`` float map where larger means more salient.
Cues register by name in :data:`CUES` (the built-in ones are imported on first lookup)::

    from wsol.saliency import cue_maps, list_cues

    list_cues()  # ['mbd', 'mbplus', 'spectral_residual']
    maps = cue_maps("mbplus", images)  # (N, H, W) float32

:mod:`wsol.saliency.prior_fusion` fuses a cue with the centre-Gaussian prior. docs/saliency.md §1–§4 gives the
formulas and the papers.
"""

from __future__ import annotations

from wsol.saliency.registry import CUES, Cue, cue_maps, get_cue, list_cues, register_cue

__all__ = ["CUES", "Cue", "cue_maps", "get_cue", "list_cues", "register_cue"]
