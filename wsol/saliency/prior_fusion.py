"""A cue fused with the centre-Gaussian prior: ``a * cue + (1 - a) * prior`` or ``cue * prior``.

Both maps are min-max normalised first. The form and ``a`` are hyper-parameters: choose them on a tuning split
(:func:`wsol.study.label_free.label_free_rows` does), never on the split that is reported.
"""

from __future__ import annotations

import numpy as np

from wsol.saliency.color import minmax

__all__ = ["FORMS", "PRIOR_FUSIONS", "fuse_with_prior"]

FORMS = ("sum", "product")
# The candidates tried on the tuning split, in order (the first best wins a tie).
PRIOR_FUSIONS: tuple[tuple[str, float], ...] = (
    *(("sum", a / 10) for a in range(1, 10)),
    ("product", 1.0),
)


def fuse_with_prior(cue: np.ndarray, prior: np.ndarray, form: str = "sum", weight: float = 0.5) -> np.ndarray:
    """Fuse one ``(H, W)`` cue map, or each of ``(N, H, W)``, with an ``(H, W)`` prior (float64).

    Args:
        cue: Raw cue maps (any range; min-max normalised per map here).
        prior: The prior map (min-max normalised here).
        form: ``"sum"`` (``weight * cue + (1 - weight) * prior``) or ``"product"`` (``cue * prior``; ``weight``
            is ignored).
        weight: The cue's weight ``a`` in [0, 1] for ``"sum"``.

    Raises:
        ValueError: Unknown form, a weight outside [0, 1], or maps of different sizes.
    """
    if form not in FORMS:
        raise ValueError(f"fuse_with_prior: form must be one of {FORMS}, got {form!r}")
    if form == "sum" and not 0.0 <= weight <= 1.0:
        raise ValueError(f"fuse_with_prior: weight must be in [0, 1], got {weight}")
    cue = np.asarray(cue)
    if cue.shape[-2:] != np.shape(prior):
        raise ValueError(f"fuse_with_prior: cue maps are {cue.shape[-2:]}, the prior is {np.shape(prior)}")
    c, p = minmax(cue), minmax(prior)
    return weight * c + (1.0 - weight) * p if form == "sum" else c * p
