"""The pooled report over class draws: every row against the label-free baseline, paired per draw and seed.

Per draw, each row's score is its val MaxBoxAccV2 with τ, variant and normalisation chosen on that draw's own
tuning split. The label-free baseline of a draw is the reference row (no labels, no training: the centre
Gaussian, saliency cues and their fusions with the prior) with the best tuning-split MaxBoxAccV2 there. A row's
pooled number is the mean over held-out draws of (row − baseline), each draw weighted equally and each of its
seeds paired with that draw's baseline; its 95% interval is a percentile bootstrap that resamples draws, then
seeds within each draw. The fully supervised ceiling is a reference row: of the box-trained rows of
:data:`CEILING_ROWS` present on a draw, the one with the better tuning-split MaxBoxAccV2 there (``fsl_all`` at the
base recipe's maps, ``fsl_all_hires16`` at 16x16). Every WSOL row also reports the fraction of the baseline →
ceiling gap it closes. The best WSOL row is chosen by its tuning-split
margin over the baseline, averaged over the held-out draws, never by val.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsol.atomic import atomic_write, write_text

__all__ = [
    "CEILING_ROWS",
    "DrawScores",
    "RowOnDraw",
    "Pooled",
    "collect_draw",
    "label_free_baseline",
    "paired_interval",
    "pool_rows",
    "write_pooled_report",
]

# The fully supervised ceiling's candidate rows, in order of preference on a tie.
CEILING_ROWS = ("fsl_all", "fsl_all_hires16")
TARGET_MARGIN = 5.0
# Below this baseline -> ceiling gap (points), the target becomes closing half of the gap.
GAP_FOR_FULL_MARGIN = 10.0
# A fraction of the gap is given only where the gap is at least this many points: a smaller one (seed noise is
# about a point here) turns a tenth of a point into thousands of percent, and a negative one flips its sign.
MIN_GAP_FOR_FRACTION = 1.0
_V2 = "MaxBoxAccV2"
_NOT_LABEL_FREE = {"all_ones", "label_free_baseline"}


@dataclass(frozen=True)
class RowOnDraw:
    """One row's runs on one draw, under the variant and normalisation chosen on the draw's tuning split.

    Attributes:
        row: Row name.
        variant: Chosen variant.
        norm: Chosen score-map normalisation (or the derived row's own rule).
        supervision: ``labels`` (a WSOL row) or ``boxes`` (a supervised reference row).
        fair: Seed -> val MaxBoxAccV2 with τ from the tuning split.
        tune: Seed -> tuning MaxBoxAccV2.
        top1: Seed -> val top-1 (None when the row has no classifier).
        seconds: Seed -> seconds per run (None when not recorded).
    """

    row: str
    variant: str
    norm: str
    supervision: str
    fair: dict[int, float]
    tune: dict[int, float]
    top1: dict[int, float | None] = field(default_factory=dict)
    seconds: dict[int, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DrawScores:
    """A draw's rows and reference rows.

    Attributes:
        name: Draw name (``dev``, ``h1``, ...).
        rows: Row name -> its runs.
        references: Reference name -> its JSON (``tune``, ``val``, ``fair`` summaries).
    """

    name: str
    rows: dict[str, RowOnDraw]
    references: dict[str, dict[str, Any]]

    @property
    def baseline(self) -> tuple[str, dict[str, Any]]:
        """The label-free baseline: see :func:`label_free_baseline`."""
        return label_free_baseline(self.references)

    @property
    def ceiling(self) -> tuple[str, float] | None:
        """The supervised ceiling here: the row of :data:`CEILING_ROWS` with the best mean tuning MaxBoxAccV2
        (ties: the first listed), and its mean val score; None when none has runs."""
        present = [name for name in CEILING_ROWS if name in self.rows]
        if not present:
            return None
        name = max(present, key=lambda n: (float(np.mean(list(self.rows[n].tune.values()))), -present.index(n)))
        return name, float(np.mean(list(self.rows[name].fair.values())))


def label_free_baseline(references: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The reference row with the best tuning-split MaxBoxAccV2, all-ones excluded (ties: the first name sorted).

    Raises:
        ValueError: no label-free reference row.
    """
    candidates = {k: v for k, v in references.items() if k not in _NOT_LABEL_FREE and "tune" in v and "fair" in v}
    if not candidates:
        raise ValueError("no label-free reference row (reference/<name>.json with tune and fair scores)")
    name = max(sorted(candidates), key=lambda k: float(candidates[k]["tune"][_V2]))
    return name, dict(candidates[name])


def _choose(runs: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The normalisation chosen on tune over ``runs`` and the runs' parts under it."""
    from wsol.study.report import choose_normalization

    norm = choose_normalization(runs)
    return norm, [dict(r) if norm == "minmax" or "norms" not in r else {**r, **r["norms"][norm]} for r in runs]


def _row_on_draw(name: str, runs_by_variant: Mapping[str, Sequence[Mapping[str, Any]]]) -> RowOnDraw:
    best: tuple[float, str, str, list[dict[str, Any]]] | None = None
    for variant, runs in sorted(runs_by_variant.items()):
        norm, normed = _choose(runs)
        score = float(np.mean([r["tune"][_V2] for r in normed]))
        # More seeds first (a variant is tuned at seed 0, and only the chosen one gets the others), then tune.
        key = (len(runs), score)
        if best is None or key > (len(best[3]), best[0]):
            best = (score, variant, norm, normed)
    assert best is not None
    _, variant, norm, normed = best
    return RowOnDraw(
        row=name,
        variant=variant,
        norm=norm,
        supervision=str(normed[0].get("supervision", "labels")),
        fair={int(r["seed"]): float(r["fair"][_V2]) for r in normed},
        tune={int(r["seed"]): float(r["tune"][_V2]) for r in normed},
        top1={int(r["seed"]): r["val"].get("top1") for r in normed},
        seconds={int(r["seed"]): r.get("seconds", {}).get("total") for r in normed},
    )


def collect_draw(name: str, folder: Path, regime: str = "all", derived: Sequence[Mapping[str, Any]] = ()) -> DrawScores:
    """A draw's finished runs (``folder/runs/<regime>/<row>/<variant>/seed<N>.json``) and reference rows.

    Args:
        name: Draw name.
        folder: The draw's study folder (as ``wsol study small-data --out`` writes it).
        regime: The regime pooled over draws.
        derived: Extra run-like records scored without training (e.g. a class map fused with a saliency cue):
            each with ``method``, ``variant``, ``seed``, ``tune``, ``val`` and ``fair`` summaries.
    """
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in sorted((folder / "runs" / regime).glob("*/*/seed*.json")):
        if not path.stem.removeprefix("seed").isdigit():
            continue  # a run's companions (seed0.fused.json, ...) are not runs
        run = json.loads(path.read_text(encoding="utf-8"))
        grouped.setdefault(run["method"], {}).setdefault(run["variant"], []).append(run)
    for run in derived:
        grouped.setdefault(str(run["method"]), {}).setdefault(str(run["variant"]), []).append(dict(run))
    references = {}
    for path in sorted((folder / "reference").glob("*.json")):
        ref = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(ref, dict) and "tune" in ref and "fair" in ref:
            references[path.stem] = ref
    rows = {row: _row_on_draw(row, variants) for row, variants in grouped.items()}
    return DrawScores(name, rows, references)


def paired_interval(
    deltas: Mapping[str, Sequence[float]], n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean over draws of each draw's mean delta, with a percentile bootstrap interval over draws and seeds.

    Args:
        deltas: Draw -> the paired (row − baseline) differences of its seeds.
        n_boot: Bootstrap resamples: draws with replacement, then each chosen draw's seeds with replacement.
        seed: Seed of the resampling (the interval is reproducible).
        level: Coverage of the interval.

    Returns:
        ``(mean, low, high)``; with one draw and one seed the interval is that single value.
    """
    arrays = [np.asarray(v, dtype=float) for v in deltas.values() if len(v)]
    if not arrays:
        raise ValueError("paired_interval: no deltas")
    mean = float(np.mean([a.mean() for a in arrays]))
    rng = np.random.default_rng(seed)
    # Per draw, n_boot resampled seed means; then n_boot resampled sets of draws.
    per_draw = np.stack([a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) for a in arrays])
    picks = rng.integers(0, len(arrays), size=(n_boot, len(arrays)))
    boot = per_draw[picks, np.arange(n_boot)[:, None]].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return mean, float(low), float(high)


@dataclass(frozen=True)
class Pooled:
    """One row pooled over the held-out draws.

    Attributes:
        row: Row name.
        supervision: ``labels`` or ``boxes``.
        draws: Held-out draws the row has runs on.
        runs: Runs counted.
        delta: Mean over draws of (row − baseline), val, τ from tune.
        low: Lower end of the 95% interval.
        high: Upper end.
        per_draw: Draw -> mean delta over its seeds.
        tune_delta: The same margin on the tuning split (the ranking key).
        gap_fraction: The mean delta over the draws where the ceiling has runs / the mean baseline → ceiling gap
            there, in percent (None without a ceiling or with a gap under :data:`MIN_GAP_FOR_FRACTION`).
        dev_delta: Mean (row − baseline) on the dev draw (None when absent).
    """

    row: str
    supervision: str
    draws: tuple[str, ...]
    runs: int
    delta: float
    low: float
    high: float
    per_draw: dict[str, float]
    tune_delta: float
    gap_fraction: float | None
    dev_delta: float | None


def _gaps(draws: Sequence[DrawScores], names: Sequence[str]) -> dict[str, float]:
    """Draw -> (ceiling − label-free baseline) on val, for the draws of ``names`` where the ceiling has runs."""
    gaps = {}
    for draw in draws:
        if draw.name in names and (ceiling := draw.ceiling) is not None:
            gaps[draw.name] = ceiling[1] - float(draw.baseline[1]["fair"][_V2])
    return gaps


def pool_rows(draws: Sequence[DrawScores], dev: str = "dev") -> list[Pooled]:
    """Every row with runs on at least one held-out draw, pooled as the module says (sorted by tuning margin)."""
    held = [d for d in draws if d.name != dev]
    out = []
    names = dict.fromkeys(row for d in held for row in d.rows)
    for row in names:
        present = [d for d in held if row in d.rows]
        deltas, tune = {}, []
        for draw in present:
            _, base = draw.baseline
            scores = draw.rows[row]
            deltas[draw.name] = [v - float(base["fair"][_V2]) for v in scores.fair.values()]
            tune.append(float(np.mean([v - float(base["tune"][_V2]) for v in scores.tune.values()])))
        mean, low, high = paired_interval(deltas)
        # The fraction of the gap closed reads the draws where the ceiling was measured (the same draws on both sides).
        gaps = _gaps(draws, [d.name for d in present])
        gap = float(np.mean(list(gaps.values()))) if gaps else None
        closed = float(np.mean([np.mean(deltas[name]) for name in gaps])) if gaps else None
        dev_draw = next((d for d in draws if d.name == dev and row in d.rows), None)
        dev_delta = None
        if dev_draw is not None:
            dev_delta = float(np.mean(list(dev_draw.rows[row].fair.values()))) - float(
                dev_draw.baseline[1]["fair"][_V2]
            )
        out.append(
            Pooled(
                row=row,
                supervision=present[0].rows[row].supervision,
                draws=tuple(d.name for d in present),
                runs=sum(len(v) for v in deltas.values()),
                delta=mean,
                low=low,
                high=high,
                per_draw={k: float(np.mean(v)) for k, v in deltas.items()},
                tune_delta=float(np.mean(tune)),
                gap_fraction=(
                    None if gap is None or closed is None or gap < MIN_GAP_FOR_FRACTION else 100.0 * closed / gap
                ),
                dev_delta=dev_delta,
            )
        )
    return sorted(out, key=lambda p: -p.tune_delta)


def _best(pooled: Sequence[Pooled], n_held: int) -> Pooled | None:
    # Only WSOL rows measured on every held-out draw compete; the ranking reads the tuning split alone.
    eligible = [p for p in pooled if p.supervision != "boxes" and len(p.draws) == n_held]
    return max(eligible, key=lambda p: p.tune_delta) if eligible else None


def _headline(best: Pooled | None, gap: float | None, with_ceiling: int = 0, held: int = 0) -> str:
    if best is None:
        return "Best WSOL row on held-out draws: none yet (no WSOL row has runs on every held-out draw)."
    fraction = "—" if best.gap_fraction is None else f"{best.gap_fraction:.0f}%"
    ceiling = "not measured yet" if gap is None else f"{gap:+.2f} above the baseline"
    if gap is not None and with_ceiling < held:
        ceiling += f" on the {with_ceiling} of {held} held-out draws where it was measured"
    return (
        f"Best WSOL row on held-out draws: **{best.row}** ({best.delta:+.2f} over the label-free baseline, 95% "
        f"interval [{best.low:+.2f}, {best.high:+.2f}]; {fraction} of the gap to the supervised ceiling, which is "
        f"{ceiling})"
    )


def _target_line(best: Pooled | None, gap: float | None) -> str:
    if best is None:
        return ""
    margin = TARGET_MARGIN if gap is None or gap >= GAP_FOR_FULL_MARGIN else gap / 2.0
    rule = f"+{margin:.2f}" + ("" if margin == TARGET_MARGIN else " (half the ceiling gap, which is under 10)")
    every = all(v > 0 for v in best.per_draw.values())
    met = best.delta >= margin and every
    return (
        f"Target: mean over held-out draws ≥ the label-free baseline {rule}, and above it on every held-out draw: "
        f"**{'met' if met else 'not met'}** (mean {best.delta:+.2f}; above the baseline on "
        f"{sum(v > 0 for v in best.per_draw.values())} of {len(best.per_draw)} draws)."
    )


def _fmt(value: float | None, spec: str = "+.2f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def write_pooled_report(
    out: Path, draws: Sequence[DrawScores], classes: Mapping[str, Mapping[str, Any]], dev: str = "dev"
) -> dict[str, Path]:
    """Write ``pooled.md``, ``pooled.csv`` (one line per draw, row and seed) and ``pooled.png`` into ``out``.

    Args:
        out: The multi-draw study folder.
        draws: Every draw's scores (:func:`collect_draw`), the dev draw first.
        classes: Draw -> ``{"seed": ..., "classes": {wnid: name}}`` (see :func:`wsol.study.draws.write_draws`).
        dev: Name of the dev draw (shown, never pooled).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "pooled.md", "csv": out / "pooled.csv", "plot": out / "pooled.png"}
    held = [d for d in draws if d.name != dev]
    pooled = pool_rows(draws, dev)
    best = _best(pooled, len(held))
    gaps = _gaps(draws, [d.name for d in held])
    gap = float(np.mean(list(gaps.values()))) if gaps else None
    cam_seconds = [s for d in held if "cam" in d.rows for s in d.rows["cam"].seconds.values() if s]
    lines = ["# Small-data study over class draws: pooled results", "", _headline(best, gap, len(gaps), len(held)), ""]
    target = _target_line(best, gap)
    lines += [target, ""] if target else []
    lines += [
        f"Held-out draws: {', '.join(d.name for d in held)}; dev draw `{dev}` shown apart (every choice of the "
        "single-draw study was made there). Val MaxBoxAccV2 with τ, variant and normalisation chosen on each draw's "
        "tuning split; Δ = row − that draw's label-free baseline, paired per draw and seed; 95% interval: bootstrap "
        "over draws, then seeds. Rows are sorted by their tuning-split Δ (the ranking key).",
        "",
        "| row | draws × runs | Δ val (mean) | 95% interval | min per-draw Δ | Δ tune | gap to ceiling closed "
        "| Δ on dev | s/run vs cam |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pooled:
        name = f"{p.row} (reference, boxes)" if p.supervision == "boxes" else p.row
        seconds = [s for d in held if p.row in d.rows for s in d.rows[p.row].seconds.values() if s]
        ratio = f"{np.median(seconds) / np.median(cam_seconds):.2f}×" if seconds and cam_seconds else "—"
        # A bootstrap over a single draw only resamples its seeds: no interval over draws to show.
        interval = f"[{p.low:+.2f}, {p.high:+.2f}]" if len(p.draws) > 1 else "— (one draw)"
        lines.append(
            f"| {name} | {len(p.draws)} × {p.runs} | **{p.delta:+.2f}** | {interval} | "
            f"{min(p.per_draw.values()):+.2f} | {p.tune_delta:+.2f} | {_fmt(p.gap_fraction, '.0f', '%')} | "
            f"{_fmt(p.dev_delta)} | {ratio} |"
        )
    lines += ["", "## Per draw (val MaxBoxAccV2, τ from tune; mean over seeds)", ""]
    header = "| row | " + " | ".join(d.name for d in draws) + " |"
    lines += [header, "|---" * (len(draws) + 1) + "|"]
    rows = list(dict.fromkeys(row for d in draws for row in d.rows))
    for row in rows:
        cells = []
        for d in draws:
            r = d.rows.get(row)
            cells.append("—" if r is None else f"{np.mean(list(r.fair.values())):.2f} ({len(r.fair)})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    refs = list(dict.fromkeys(k for d in draws for k in d.references if k not in _NOT_LABEL_FREE))
    for ref in refs:
        cells = [f"{d.references[ref]['fair'][_V2]:.2f}" if ref in d.references else "—" for d in draws]
        lines.append(f"| {ref} (label-free reference) | " + " | ".join(cells) + " |")
    baseline_cells = [f"{d.baseline[0]} {d.baseline[1]['fair'][_V2]:.2f}" for d in draws]
    lines.append("| **label-free baseline** (best on tune) | " + " | ".join(baseline_cells) + " |")
    ceiling_cells = [f"{c[0]} {c[1]:.2f}" if (c := d.ceiling) is not None else "—" for d in draws]
    lines.append("| **supervised ceiling** (best on tune) | " + " | ".join(ceiling_cells) + " |")
    lines += ["", "## The draws", "", "| draw | seed | classes |", "|---|---|---|"]
    for d in draws:
        info = classes.get(d.name, {})
        names = ", ".join(f"{w} {n}" for w, n in dict(info.get("classes", {})).items())
        seed = info.get("seed")
        lines.append(f"| {d.name} | {'— (given)' if seed is None else seed} | {names} |")
    write_text(paths["markdown"], "\n".join(lines) + "\n")

    records = []
    for d in draws:
        base_name, base = d.baseline
        for r in d.rows.values():
            for seed, fair in r.fair.items():
                records.append(
                    {
                        "draw": d.name,
                        "row": r.row,
                        "variant": r.variant,
                        "norm": r.norm,
                        "supervision": r.supervision,
                        "seed": seed,
                        "val_fair_MaxBoxAccV2": round(fair, 4),
                        "tune_MaxBoxAccV2": round(r.tune[seed], 4),
                        "baseline": base_name,
                        "baseline_val_fair_MaxBoxAccV2": round(float(base["fair"][_V2]), 4),
                        "delta": round(fair - float(base["fair"][_V2]), 4),
                        "top1_val": "" if r.top1.get(seed) is None else round(float(r.top1[seed]), 4),
                        "seconds": "" if r.seconds.get(seed) is None else round(float(r.seconds[seed]), 1),
                    }
                )

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["draw"])
            writer.writeheader()
            writer.writerows(records)

    atomic_write(paths["csv"], write_csv)
    if draws:
        from wsol.plots import plot_draws

        plot_draws(
            paths["plot"],
            {d.name: {row: list(r.fair.values()) for row, r in d.rows.items()} for d in draws},
            {d.name: float(d.baseline[1]["fair"][_V2]) for d in draws},
            {d.name: c[1] for d in draws if (c := d.ceiling) is not None},
            {
                d.name: float(d.references["center_gaussian"]["fair"][_V2])
                for d in draws
                if "center_gaussian" in d.references
            },
            highlight=best.row if best is not None else None,
            order=[p.row for p in pooled],  # the table's order (by tuning margin); the dev draw's own rows after
        )
    return paths
