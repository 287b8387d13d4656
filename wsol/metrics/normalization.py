"""Score-map normalisations: how a raw CAM becomes a [0, 1] score map, one registry entry per rule.

Kim et al., "Normalization Matters in Weakly Supervised Object Localization" (ICCV 2021, arXiv 2107.13221)
show that this step alone moves MaxBoxAccV2 by points and can reorder methods. Each rule acts on one raw map
``m`` (any sign) after it has been upsampled to the score-map size, in float64. ``s`` is ``m`` flattened and
sorted ascending, ``n`` its size, and ``s[int(n * q)]`` its value at quantile ``q`` — this index rule exactly,
no interpolation, with ``n * q`` computed in Python floats:

==========  ================================================================================================
``minmax``  ``(m - min) / (max - min)`` — the reference protocol's default (Choe et al., CVPR 2020)
``max``     ``relu(m) / max(relu(m))``
``pas``     ``m' = m - min``; ``m' / s'[int(0.9 n)]`` clipped at 1 (s' sorts ``m'``)
``ivr``     ``relu(m - s[int(p n)]) / max(...)`` with percentile ``p`` (0.6 by default; tune it)
==========  ================================================================================================

The order of operations is the published code's (subtract, then divide), so the results are bit-identical to
it in float64. A map holding NaN or ±inf, or a constant map, becomes all zeros (as the protocol's min-max
does); so does a map whose rule would divide by zero (``max`` of a map with no positive value, ``ivr`` when
the percentile value is the maximum). Under ``pas`` a zero divisor (90 % of the map at its minimum) gives the
rule's limit: 1 above the minimum, 0 at it. The k-th value is found by selection (a compiled histogram
selection in numpy, ``torch.kthvalue`` in torch), which returns exactly ``sorted[k]`` in linear time.

Each rule is one :class:`NormalizationRule` in :data:`NORMALIZATIONS`, holding its three forms (numpy, torch,
and the ONNX-exportable torch ops of ``wsol export``), whether it takes the percentile, and the text the docs,
the command line, the sidecar and the reports print. Every consumer iterates over the registry, so a new rule
is one :func:`register_normalization` call. This module imports no torch: the torch forms use tensor methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from wsol.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_NORMALIZATION",
    "DEFAULT_PERCENTILE",
    "NORMALIZATIONS",
    "PAS_QUANTILE",
    "NormalizationRule",
    "check_normalization",
    "get_normalization",
    "normalization_rules",
    "normalization_table",
    "normalize_scoremaps",
    "normalize_scoremaps_torch",
    "quantile_index",
    "register_normalization",
    "topk_kth_smallest",
]

DEFAULT_NORMALIZATION = "minmax"
DEFAULT_PERCENTILE = 0.6
PAS_QUANTILE = 0.9


@dataclass(frozen=True)
class NormalizationRule:
    """One score-map normalisation: its three forms, its parameters and the text printed about it.

    Attributes:
        name: The name every option, file and study column uses (``--normalization NAME``).
        numpy: ``(m, percentile) -> map``: one float64 map ``m`` (a copy the form may modify, any values) to a
            float64 map in [0, 1]; a map with NaN or ±inf, or a constant map, gives all zeros.
        torch: ``(rows, percentile) -> rows``: float64 rows ``(B, N)``, every value finite, to rows in [0, 1]
            equal to the numpy form's (the caller zeroes rows that were not finite or constant).
        onnx: ``(rows, percentile, eps) -> rows``: the export's form of ``(..., N)`` rows, built from
            ONNX-exportable ops with ``eps`` in each divisor instead of the zero-map special cases.
        formula: The map, as docs/protocol.md's table writes it.
        degenerate: The maps that give all zeros (or the rule's limit), as the same table writes them.
        title: The table's rule column (the name and what it is).
        cli: The rule in ``--normalization``'s help.
        onnx_formula: ``(percentile, size, eps) -> text``: the sidecar's formula for maps of ``size`` pixels.
        uses_percentile: The rule reads ``percentile`` (and output files record it).
        study_percentiles: Percentiles the study scores the rule at, each as column ``<name><p>``, the best
            chosen on the tuning split; empty: scored once, as ``<name>``.
        sorted_index: The rule reads a sorted index fixed by the map size (no dynamic-size ONNX export).
    """

    name: str
    numpy: Callable[[np.ndarray, float], np.ndarray]
    torch: Callable[[Any, float], Any]
    onnx: Callable[[Any, float, float], Any]
    formula: str
    degenerate: str
    title: str
    cli: str
    onnx_formula: Callable[[float, int, float], str]
    uses_percentile: bool = False
    study_percentiles: tuple[float, ...] = ()
    sorted_index: bool = False

    def label(self, percentile: float) -> str:
        """How reports name the rule: ``ivr (percentile 0.3)``, ``minmax``."""
        return f"{self.name} (percentile {percentile:g})" if self.uses_percentile else self.name

    def record(self, percentile: float) -> dict[str, Any]:
        """What output files record: the rule and, if it reads one, the percentile."""
        return {"method": self.name, "percentile": percentile if self.uses_percentile else None}

    def study_variants(self) -> dict[str, tuple[str, float]]:
        """The study's columns of this rule: column name -> (rule, percentile)."""
        if not self.study_percentiles:
            return {self.name: (self.name, DEFAULT_PERCENTILE)}
        return {f"{self.name}{p:g}": (self.name, p) for p in self.study_percentiles}


class _RuleRegistry(Registry[NormalizationRule]):
    """The registry idiom, listing names in registration order (the protocol's ``minmax`` first)."""

    def names(self) -> list[str]:
        """Registered names in registration order."""
        self._load()
        return list(self._entries)


NORMALIZATIONS: Registry[NormalizationRule] = _RuleRegistry("normalization")


def register_normalization(rule: NormalizationRule) -> NormalizationRule:
    """Add ``rule`` to :data:`NORMALIZATIONS` (undo with ``NORMALIZATIONS.remove(name)``).

    Raises:
        ValueError: the name is taken.
    """
    return NORMALIZATIONS.register(rule.name)(rule)


def normalization_rules() -> list[NormalizationRule]:
    """Every registered rule, in registration order."""
    return [NORMALIZATIONS.get(name) for name in NORMALIZATIONS.names()]


def check_normalization(normalization: str, percentile: float = DEFAULT_PERCENTILE) -> None:
    """Raise ``ValueError`` naming the argument unless ``normalization`` and ``percentile`` are valid."""
    if normalization not in NORMALIZATIONS:
        names = ", ".join(NORMALIZATIONS.names())
        raise ValueError(f"normalization must be one of {names}, got {normalization!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.floating)):
        raise ValueError(f"percentile must be a number in [0, 1), got {percentile!r}")
    if not 0.0 <= float(percentile) < 1.0:
        raise ValueError(f"percentile must lie in [0, 1), got {percentile}")


def get_normalization(normalization: str, percentile: float = DEFAULT_PERCENTILE) -> NormalizationRule:
    """The rule named ``normalization``, after :func:`check_normalization`."""
    check_normalization(normalization, percentile)
    return NORMALIZATIONS.get(normalization)


def quantile_index(size: int, quantile: float) -> int:
    """``int(size * quantile)``: the index of the sorted map that the published rule reads."""
    return int(size * float(quantile))


def normalization_table() -> str:
    """The rules as docs/protocol.md §1.5 tabulates them (Markdown, one row per registered rule)."""
    rows = ["| rule | map | degenerate cases (→ all zeros unless stated) |", "|---|---|---|"]
    rows += [f"| {rule.title} | {rule.formula} | {rule.degenerate} |" for rule in normalization_rules()]
    return "\n".join(rows)


# ---- the drivers: one map or a batch, numpy and torch ----


def normalize_scoremaps(
    maps: np.ndarray, normalization: str = DEFAULT_NORMALIZATION, percentile: float = DEFAULT_PERCENTILE
) -> np.ndarray:
    """Normalise raw maps ``(B, H, W)`` (or one ``(H, W)`` map) to float64 score maps in [0, 1].

    Args:
        maps: Raw maps of any sign and float dtype, already at the score-map size.
        normalization: A rule of :data:`NORMALIZATIONS`.
        percentile: IVR's percentile ``p`` in [0, 1) (ignored by the rules that read none).
    """
    rule = get_normalization(normalization, percentile)
    maps = np.asarray(maps)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (H, W) or (B, H, W), got shape {maps.shape}")
    batch = maps.reshape(-1, *maps.shape[-2:])
    out = np.empty(batch.shape, dtype=np.float64)
    for i, m in enumerate(batch):
        out[i] = rule.numpy(np.array(m, dtype=np.float64), percentile)
    return out.reshape(maps.shape)


def normalize_scoremaps_torch(
    maps: torch.Tensor, normalization: str = DEFAULT_NORMALIZATION, percentile: float = DEFAULT_PERCENTILE
) -> torch.Tensor:
    """:func:`normalize_scoremaps` for a batch ``(B, H, W)`` in pure torch (float64, on the input's device)."""
    import torch

    rule = get_normalization(normalization, percentile)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    flat = maps.detach().to(torch.float64).flatten(1).clone()
    if flat.shape[0] == 0 or flat.shape[1] == 0:
        return flat.view_as(maps)
    invalid = ~torch.isfinite(flat).all(dim=1)
    flat = torch.where(invalid[:, None], torch.zeros_like(flat), flat)
    invalid |= flat.amin(dim=1) == flat.amax(dim=1)
    out = rule.torch(flat, percentile)
    out[invalid] = 0.0
    return out.view_as(maps)


# ---- shared pieces of the forms ----


def _finite_and_varying(m: np.ndarray) -> bool:
    return bool(np.isfinite(m).all()) and m.min() != m.max()


def _divide_rows(rows: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """``rows / divisor`` per row (``divisor`` is ``(B, 1)``), with all-zero rows where the divisor is 0."""
    zero = divisor[:, 0] == 0
    out = rows / divisor.where(~zero[:, None], divisor.new_ones(()))
    out[zero] = 0.0
    return out


def _kth_rows(rows: torch.Tensor, quantile: float) -> torch.Tensor:
    """``sorted(row)[int(N * quantile)]`` per row, kept as ``(B, 1)`` (``kthvalue`` is 1-based)."""
    return rows.kthvalue(quantile_index(rows.shape[1], quantile) + 1, dim=1, keepdim=True).values


def topk_kth_smallest(flat: torch.Tensor, index: int) -> torch.Tensor:
    """``sorted(flat)[index]`` along the last axis, kept as a trailing axis of size 1, via one ``topk``.

    ``k`` is a Python constant, so the ONNX exporters emit a single ``TopK`` with a constant K. The shorter
    side is sorted: the ``index + 1`` smallest values or the ``size - index`` largest, whose max (or min) is
    the wanted value whatever their order.
    """
    size = int(flat.shape[-1])
    if not 0 <= index < size:
        raise ValueError(f"index must lie in [0, {size}), got {index}")
    if index + 1 <= size - index:
        return flat.topk(index + 1, dim=-1, largest=False).values.amax(dim=-1, keepdim=True)
    return flat.topk(size - index, dim=-1, largest=True).values.amin(dim=-1, keepdim=True)


# ---- minmax ----


def _minmax_numpy(m: np.ndarray, percentile: float) -> np.ndarray:
    if not _finite_and_varying(m):
        return np.zeros_like(m)
    m -= m.min()
    m /= m.max()
    return m


def _minmax_torch(rows: torch.Tensor, percentile: float) -> torch.Tensor:
    rows = rows - rows.amin(dim=1, keepdim=True)
    return _divide_rows(rows, rows.amax(dim=1, keepdim=True))


def _minmax_onnx(flat: torch.Tensor, percentile: float, eps: float) -> torch.Tensor:
    lo = flat.amin(dim=-1, keepdim=True)
    return (flat - lo) / (flat.amax(dim=-1, keepdim=True) - lo + eps)


register_normalization(
    NormalizationRule(
        name="minmax",
        numpy=_minmax_numpy,
        torch=_minmax_torch,
        onnx=_minmax_onnx,
        formula="`(m − min) / (max − min)`",
        degenerate="NaN/±inf, constant",
        title="`minmax` (default, the reference protocol)",
        cli="minmax (the reference protocol)",
        onnx_formula=lambda percentile, size, eps: f"per map (x - min) / (max - min + {eps:g})",
    )
)


# ---- max ----


def _max_numpy(m: np.ndarray, percentile: float) -> np.ndarray:
    if not _finite_and_varying(m):
        return np.zeros_like(m)
    m = np.maximum(0.0, m)
    peak = m.max()
    return m / peak if peak > 0 else np.zeros_like(m)


def _max_torch(rows: torch.Tensor, percentile: float) -> torch.Tensor:
    rows = rows.clamp(min=0.0)
    return _divide_rows(rows, rows.amax(dim=1, keepdim=True))


def _max_onnx(flat: torch.Tensor, percentile: float, eps: float) -> torch.Tensor:
    positive = flat.relu()
    return positive / (positive.amax(dim=-1, keepdim=True) + eps)


register_normalization(
    NormalizationRule(
        name="max",
        numpy=_max_numpy,
        torch=_max_torch,
        onnx=_max_onnx,
        formula="`relu(m) / max(relu(m))`",
        degenerate="NaN/±inf, constant, no positive value",
        title="`max` (the original CAM paper)",
        cli="max",
        onnx_formula=lambda percentile, size, eps: f"per map relu(x) / (max(relu(x)) + {eps:g})",
    )
)


# ---- pas ----


def _pas_numpy(m: np.ndarray, percentile: float) -> np.ndarray:
    from wsol.metrics._select import pas_normalize  # compiled; checks NaN/inf and constant maps in its first pass

    return pas_normalize(m, quantile_index(m.size, PAS_QUANTILE))


def _pas_torch(rows: torch.Tensor, percentile: float) -> torch.Tensor:
    rows = rows - rows.amin(dim=1, keepdim=True)
    divisor = _kth_rows(rows, PAS_QUANTILE)
    limit = divisor[:, 0] == 0  # the rule's limit: 1 above the minimum, 0 at it
    rows = (rows > 0).to(rows.dtype).where(limit[:, None], rows)
    divisor = divisor.new_ones(()).expand_as(divisor).where(limit[:, None], divisor)
    return (rows / divisor).clamp(max=1.0)


def _pas_onnx(flat: torch.Tensor, percentile: float, eps: float) -> torch.Tensor:
    shifted = flat - flat.amin(dim=-1, keepdim=True)
    divisor = topk_kth_smallest(shifted, quantile_index(int(flat.shape[-1]), PAS_QUANTILE)) + eps
    return (shifted / divisor).clamp(max=1.0)


def _pas_onnx_formula(percentile: float, size: int, eps: float) -> str:
    k = quantile_index(size, PAS_QUANTILE)
    return f"per map d = x - min; min(1, d / (sorted(d)[{k}] + {eps:g})) (PaS, sorted index int(0.9 * {size}))"


register_normalization(
    NormalizationRule(
        name="pas",
        numpy=_pas_numpy,
        torch=_pas_torch,
        onnx=_pas_onnx,
        formula="`m' = m − min`; `min(1, m' / sorted'[int(0.9 n)])`",
        degenerate="NaN/±inf, constant; a zero divisor gives the limit: 1 above the minimum, 0 at it",
        title="`pas`",
        cli="pas",
        onnx_formula=_pas_onnx_formula,
        sorted_index=True,
    )
)


# ---- ivr ----


def _ivr_numpy(m: np.ndarray, percentile: float) -> np.ndarray:
    from wsol.metrics._select import ivr_normalize  # compiled; checks NaN/inf and constant maps in its first pass

    return ivr_normalize(m, quantile_index(m.size, percentile))


def _ivr_torch(rows: torch.Tensor, percentile: float) -> torch.Tensor:
    rows = (rows - _kth_rows(rows, percentile)).clamp(min=0.0)
    return _divide_rows(rows, rows.amax(dim=1, keepdim=True))


def _ivr_onnx(flat: torch.Tensor, percentile: float, eps: float) -> torch.Tensor:
    residual = (flat - topk_kth_smallest(flat, quantile_index(int(flat.shape[-1]), percentile))).relu()
    return residual / (residual.amax(dim=-1, keepdim=True) + eps)


def _ivr_onnx_formula(percentile: float, size: int, eps: float) -> str:
    k = quantile_index(size, percentile)
    return (
        f"per map r = relu(x - sorted(x)[{k}]); r / (max(r) + {eps:g}) "
        f"(IVR, percentile {percentile:g}, sorted index int({percentile:g} * {size}))"
    )


register_normalization(
    NormalizationRule(
        name="ivr",
        numpy=_ivr_numpy,
        torch=_ivr_torch,
        onnx=_ivr_onnx,
        formula="`relu(m − sorted[int(p n)]) / max(...)`, `p` = `percentile` (0.6 by default; tune it)",
        degenerate="NaN/±inf, constant, percentile value equal to the maximum",
        title="`ivr`",
        cli="ivr (Kim et al., ICCV 2021)",
        onnx_formula=_ivr_onnx_formula,
        uses_percentile=True,
        study_percentiles=(0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9),
        sorted_index=True,
    )
)
