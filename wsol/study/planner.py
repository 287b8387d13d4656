"""Planning the grid from the results so far: variants tuned at the first seed, then the combination.

A row with several variants first trains each at the first seed and keeps the one with the best tuning-split
MaxBoxAccV2; its other seeds follow. Once every row has all its seeds, the combination takes, per factor
group, the row that beat the plain CAM on the tuning split by the most. Val is never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsol.study.grid import BASE_CONFIG, COMBO, MethodSpec, RunSpec, combine, merge

__all__ = ["TOP1_SLACK", "Plan", "choose_combination", "plan_runs"]

# A row joins the combination only if its tuning top-1 stays within this many points of the plain CAM's.
TOP1_SLACK = 1.0


@dataclass
class Plan:
    """The runs decidable from the results so far.

    Attributes:
        specs: Runs in execution order (finished ones included).
        total: Number of runs the whole grid will have (the combination counted if it may run).
        notes: Per regime, how variants and the combination were chosen.
        chosen: Per regime, row name -> the variant that is (or will be) run for every seed, once decided.
    """

    specs: list[RunSpec]
    total: int
    notes: dict[str, list[str]]
    chosen: dict[str, dict[str, str]]


def _mean(results: Sequence[dict[str, Any]], *path: str) -> float:
    values = []
    for result in results:
        for key in path:
            result = result[key]
        values.append(float(result))
    return float(np.mean(values))


def choose_combination(
    rows: Sequence[tuple[MethodSpec, str, list[dict[str, Any]]]],
    baseline: list[dict[str, Any]],
    excluded: list[str] | None = None,
) -> list[tuple[MethodSpec, str]]:
    """Per factor group, the row with the best mean tuning MaxBoxAccV2 that beats the plain CAM's.

    A row counts only if its mean tuning top-1 is at most :data:`TOP1_SLACK` points below the baseline's;
    only tuning-split numbers are read.

    Args:
        rows: ``(row, chosen variant, its results over the seeds)`` of every combinable row.
        baseline: The plain CAM's results over the seeds.
        excluded: If given, a line is appended for every row that beats the plain CAM's MaxBoxAccV2 but
            is left out for its top-1.
    """
    base_loc, base_top1 = _mean(baseline, "tune", "MaxBoxAccV2"), _mean(baseline, "tune", "top1")
    best: dict[str, tuple[float, MethodSpec, str]] = {}
    for row, variant, results in rows:
        loc, top1 = _mean(results, "tune", "MaxBoxAccV2"), _mean(results, "tune", "top1")
        if row.group is None or loc <= base_loc:
            continue
        if top1 < base_top1 - TOP1_SLACK:
            if excluded is not None:
                excluded.append(
                    f"{row.name}: tuning MaxBoxAccV2 {loc:.2f} beats the plain CAM's {base_loc:.2f}, but its tuning "
                    f"top-1 {top1:.2f} is more than {TOP1_SLACK:g} point below {base_top1:.2f}"
                )
            continue
        if row.group not in best or loc > best[row.group][0]:
            best[row.group] = (loc, row, variant)
    order = {row.name: i for i, (row, _, _) in enumerate(rows)}
    return [(row, v) for _, row, v in sorted(best.values(), key=lambda b: order[b[1].name])]


def plan_runs(
    methods: Sequence[MethodSpec],
    regimes: Sequence[str],
    seeds: Sequence[int],
    lookup: Callable[[RunSpec], dict[str, Any] | None],
    base: Mapping[str, Any] | None = None,
    combination: bool = True,
) -> Plan:
    """Every run that can be decided now, given the finished results ``lookup`` returns.

    Args:
        methods: The rows; the combination needs the plain ``cam`` row among them.
        regimes: Regime names.
        seeds: Seeds of every configuration; the first also tunes the variants.
        lookup: A run's result, or None while it is not finished.
        base: Overrides of :data:`~wsol.study.grid.BASE_CONFIG` for every run.
        combination: Add the combination row once the single rows are complete.

    Returns:
        The runs ordered seed by seed (every row's first seed before any second one), combination last.
    """
    base = merge(BASE_CONFIG, base or {})
    seeds = list(seeds)
    specs: dict[str, tuple[tuple, RunSpec]] = {}
    notes: dict[str, list[str]] = {}
    chosen_variants: dict[str, dict[str, str]] = {}
    total = 0
    for r, regime in enumerate(regimes):
        notes[regime] = []
        chosen_variants[regime] = {}
        complete: list[tuple[MethodSpec, str, list[dict[str, Any]]]] = []
        for m, row in enumerate(methods):
            total += len(row.variants) + len(seeds) - 1
            configs = {v: merge(base, o) for v, o in row.variants.items()}
            variant = next(iter(row.variants))
            if len(row.variants) > 1:
                trials = [RunSpec(row.name, v, regime, seeds[0], configs[v]) for v in row.variants]
                for spec in trials:
                    specs[spec.key] = ((0, 0, r, m), spec)
                scores = [lookup(spec) for spec in trials]
                if any(s is None for s in scores):
                    continue
                tuned = [s["tune"]["MaxBoxAccV2"] for s in scores]
                variant = trials[int(np.argmax(tuned))].variant
                notes[regime].append(
                    f"{row.name}: {variant} chosen on the tuning split (seed {seeds[0]} MaxBoxAccV2 "
                    + ", ".join(f"{t.variant} {v:.2f}" for t, v in zip(trials, tuned, strict=True))
                    + ")"
                )
            chosen_variants[regime][row.name] = variant
            runs = [RunSpec(row.name, variant, regime, s, configs[variant]) for s in seeds]
            for i, spec in enumerate(runs):
                specs.setdefault(spec.key, ((0, i, r, m), spec))
            results = [lookup(spec) for spec in runs]
            if all(res is not None for res in results):
                complete.append((row, variant, results))
        names = [row.name for row in methods]
        if not combination or "cam" not in names:
            continue
        total += len(seeds)
        if len(complete) < len(methods):
            continue
        baseline = next(res for row, _, res in complete if row.name == "cam")
        excluded: list[str] = []
        chosen = choose_combination(complete, baseline, excluded)
        notes[regime] += [f"left out of the combination: {line}" for line in excluded]
        if len(chosen) < 2:
            notes[regime].append(f"combination: {len(chosen)} row(s) beat the plain CAM on the tuning split; not run")
            total -= len(seeds)
            continue
        name, overrides = combine(chosen)
        notes[regime].append(f"combination (chosen on the tuning split): {name}")
        chosen_variants[regime][COMBO] = name
        for i, s in enumerate(seeds):
            spec = RunSpec(COMBO, name, regime, s, merge(base, overrides))
            specs[spec.key] = ((1, i, r, 0), spec)
    ordered = [spec for _, spec in sorted(specs.values(), key=lambda item: item[0])]
    return Plan(ordered, total, notes, chosen_variants)
