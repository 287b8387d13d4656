"""Aggregate the study's run results into ``results.csv``, ``results.md`` and ``results.png``.

The table shows mean ± sample standard deviation (ddof 1) over seeds; per-IoU values are means. The
"fair" MaxBoxAccV2 reads val's BoxAcc at the τ chosen on the tuning split; the "reference" one
re-optimises τ on val as the benchmark defines it. The verdict names the configuration with the best
tuning-split MaxBoxAccV2 and compares it on val with the centre prior + 5 and the plain CAM's top-1.
Seconds per run are the median over seeds: a run that shared the CPU with other work stays visible in
``results.csv`` without skewing the row.

Runs scored under every normalisation (``norms``) also get one chosen per row on the tuning split (mean
tuning MaxBoxAccV2 over the row's runs); the verdict ranks rows by that tuning number. Rows trained with
boxes (the few-shot fully supervised reference) are shown but never named the best WSOL row.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol.atomic import atomic_write, write_text

__all__ = ["TARGET_MARGIN", "choose_normalization", "group_runs", "write_report"]

# The target: the centre-Gaussian prior's val MaxBoxAccV2 plus five points.
TARGET_MARGIN = 5.0
_V2 = "MaxBoxAccV2"
_BASELINE = "label_free_baseline"


def group_runs(
    results: Sequence[dict[str, Any]], chosen: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, list[tuple[str, str, list[dict[str, Any]]]]]:
    """Regime -> ``(method, variant, runs)`` in first-seen order, one variant per method.

    Args:
        results: Run results.
        chosen: Regime -> method -> the variant chosen on the tuning split; a method without one shows
            its variant with the most runs (the first seen on a tie).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for res in results:
        groups.setdefault((res["regime"], res["method"], res["variant"]), []).append(res)
    best: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}
    for (regime, method, variant), runs in groups.items():
        pick = (chosen or {}).get(regime, {}).get(method)
        if pick is not None and variant != pick:
            continue
        if (regime, method) not in best or len(runs) > len(best[regime, method][1]):
            best[regime, method] = (variant, runs)
    out: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {}
    for (regime, method), (variant, runs) in best.items():
        out.setdefault(regime, []).append((method, variant, sorted(runs, key=lambda r: r["seed"])))
    return out


def _values(runs: Sequence[Mapping[str, Any]], *path: str) -> np.ndarray:
    out = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        out.append(np.nan if value is None else float(value))
    return np.asarray(out)


def _stat(runs: Sequence[Mapping[str, Any]], *path: str) -> tuple[float, float]:
    values = _values(runs, *path)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _pm(runs: Sequence[Mapping[str, Any]], *path: str) -> str:
    mean, std = _stat(runs, *path)
    if np.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if len(runs) > 1 else f"{mean:.2f}"


def choose_normalization(runs: Sequence[Mapping[str, Any]]) -> str:
    """The normalisation with the best mean tuning MaxBoxAccV2 over ``runs`` (``minmax`` if any run lacks scores).

    Ties keep the earlier name of the runs' ``norms`` (min-max first).
    """
    if not runs or any("norms" not in run for run in runs):
        return "minmax"
    names = [n for n in runs[0]["norms"] if all(n in run["norms"] for run in runs)]
    means = [float(np.mean([run["norms"][n]["tune"][_V2] for run in runs])) for n in names]
    return names[int(np.argmax(means))]


def _normed(runs: Sequence[Mapping[str, Any]], norm: str) -> list[Mapping[str, Any]]:
    # The runs' tune/val/fair parts under ``norm`` (the top level holds min-max).
    return [run if norm == "minmax" else {**run, **run["norms"][norm]} for run in runs]


def _is_reference(runs: Sequence[Mapping[str, Any]]) -> bool:
    return any(run.get("supervision") == "boxes" for run in runs)


def _reference_rows(references: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # The reference rows proper: ``label_free_baseline`` only names one of them.
    return {k: v for k, v in references.items() if k != _BASELINE}


def _reference_source(ref: Mapping[str, Any]) -> str:
    fusion = ref.get("fusion")
    if fusion:
        weight = "" if fusion["form"] == "product" else f" {fusion['weight']:g}"
        return f"× centre prior ({fusion['form']}{weight}, from tune)"
    return "saliency, no labels" if "seconds_per_image" in ref else "`wsol evaluate --npz`"


def _cost(ref: Mapping[str, Any]) -> str:
    # A saliency row's cost: the cue's seconds per image when its maps were computed (no training).
    seconds = ref.get("seconds_per_image")
    return "—" if seconds is None else f"{seconds * 1e3:.1f} ms/image"


def _baseline_line(references: Mapping[str, dict[str, Any]]) -> list[str]:
    baseline = references.get(_BASELINE)
    if not baseline:
        return []
    return [
        f"Label-free baseline (best tuning MaxBoxAccV2 among the centre Gaussian, the saliency cues and their "
        f"fusions with the centre prior; no labels, no training): **{baseline['name']}**, val MaxBoxAccV2 "
        f"{baseline['fair'][_V2]:.2f} (τ from tune), tune {baseline['tune'][_V2]:.2f}.",
        "",
    ]


def _ious(runs: Sequence[Mapping[str, Any]], part: str) -> str:
    keys = list(runs[0][part]["per_iou"])
    return "/".join(f"{_stat(runs, part, 'per_iou', k)[0]:.1f}" for k in keys)


def _csv_rows(results: Sequence[dict[str, Any]], references: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for res in [*results, *_reference_rows(references).values()]:
        row: dict[str, Any] = {
            "regime": res.get("regime", "any"),
            "method": res["method"],
            "variant": res.get("variant", ""),
            "seed": res.get("seed", ""),
            "n_train": res.get("n_train", ""),
            "epochs": res.get("config", {}).get("epochs", ""),
            "top1_val": res["val"].get("top1"),
            "top1_tune": res["tune"].get("top1"),
        }
        for part, name in (("fair", "val_fair"), ("val", "val_ref")):
            row[f"{name}_{_V2}"] = res[part][_V2]
            row.update({f"{name}_iou{k}": v for k, v in res[part]["per_iou"].items()})
            row[f"{name}_Top1Loc"] = res[part].get("Top1Loc")
        row[f"tune_{_V2}"] = res["tune"][_V2]
        row["supervision"] = res.get("supervision", "labels" if "regime" in res else "none")
        for norm, part in res.get("norms", {}).items():
            row[f"tune_{_V2}_{norm}"] = part["tune"][_V2]
            row[f"val_fair_{_V2}_{norm}"] = part["fair"][_V2]
        row.update({f"tau{k}_from_tune": v for k, v in res["fair"]["tau"].items()})
        seconds = res.get("seconds", {})
        row.update({f"seconds_{k}": seconds.get(k) for k in ("train", "eval", "total", "per_epoch")})
        row["config_hash"] = res.get("config_hash", "")
        rows.append({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return rows


def _table(groups: list[tuple[str, str, list[dict[str, Any]]]], references: Mapping[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| method | variant | runs | top-1 | MaxBoxAccV2 (τ from tune) | IoU 30/50/70 "
        "| MaxBoxAccV2 (reference, τ on val) | IoU 30/50/70 | Top-1 Loc (τ from tune) | tune MaxBoxAccV2 "
        "| norm (from tune) | MaxBoxAccV2 (τ + norm from tune) | s/run (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, variant, runs in groups:
        seconds = np.median(_values(runs, "seconds", "total"))
        norm = choose_normalization(runs)
        name = f"{method} (reference, boxes)" if _is_reference(runs) else method
        lines.append(
            f"| {name} | {variant} | {len(runs)} | {_pm(runs, 'val', 'top1')} | **{_pm(runs, 'fair', _V2)}** | "
            f"{_ious(runs, 'fair')} | {_pm(runs, 'val', _V2)} | {_ious(runs, 'val')} | "
            f"{_pm(runs, 'fair', 'Top1Loc')} | {_pm(runs, 'tune', _V2)} | {norm} | "
            f"**{_pm(_normed(runs, norm), 'fair', _V2)}** | {seconds:.0f} |"
        )
    baseline = references.get(_BASELINE, {}).get("name")
    for name, ref in _reference_rows(references).items():
        label = f"{name} (reference{', label-free baseline' if name == baseline else ''})"
        lines.append(
            f"| {label} | {_reference_source(ref)} | 1 | — | **{ref['fair'][_V2]:.2f}** "
            f"| {_ious([ref], 'fair')} | {ref['val'][_V2]:.2f} | {_ious([ref], 'val')} "
            f"| — | {ref['tune'][_V2]:.2f} | — | — | {_cost(ref)} |"
        )
    return lines


def _norm_table(groups: list[tuple[str, str, list[dict[str, Any]]]]) -> list[str]:
    """Val MaxBoxAccV2 (τ from tune) of every row scored under each normalisation, IVR's p chosen on tune."""
    # Rows whose older runs predate the normalisation scores show the runs that have them, counted.
    scored = []
    for method, _, runs in groups:
        normed = [run for run in runs if "norms" in run]
        if normed:
            label = method if len(normed) == len(runs) else f"{method} ({len(normed)} of {len(runs)} runs)"
            scored.append((label, normed))
    if not scored:
        return []
    from wsol.metrics.normalization import normalization_rules
    from wsol.study.scoring import NORM_VARIANTS

    rules = normalization_rules()
    headings = [rule.name + (" (p from tune)" if rule.study_percentiles else "") for rule in rules]
    lines = [
        "Val MaxBoxAccV2 (τ from tune) by score-map normalisation; IVR's percentile p chosen on the tuning split; "
        "**bold**: the normalisation chosen on the tuning split.",
        "",
        f"| method | {' | '.join(headings)} | chosen − minmax |",
        "|---" * (len(rules) + 2) + "|",
    ]
    for method, runs in scored:
        chosen = choose_normalization(runs)
        cells = []
        for rule in rules:
            norm, suffix = rule.name, ""
            if rule.study_percentiles:  # the rule's column shows its percentile chosen on tune
                grid = [n for n in runs[0]["norms"] if n in NORM_VARIANTS and NORM_VARIANTS[n][0] == rule.name]
                if grid:
                    norm = choose_normalization([{**run, "norms": {n: run["norms"][n] for n in grid}} for run in runs])
                    suffix = f" (p {NORM_VARIANTS[norm][1]:g})"
            if not all(norm == "minmax" or norm in run["norms"] for run in runs):
                cells.append("—")
                continue
            text = _pm(_normed(runs, norm), "fair", _V2) + suffix
            cells.append(f"**{text}**" if norm == chosen else text)
        gain = _stat(_normed(runs, chosen), "fair", _V2)[0] - _stat(runs, "fair", _V2)[0]
        lines.append(f"| {method} | {' | '.join(cells)} | {gain:+.2f} |")
    return [*lines, ""]


def _verdict(groups: list[tuple[str, str, list[dict[str, Any]]]], references: Mapping[str, dict[str, Any]]) -> str:
    target = references["center_gaussian"]["val"][_V2] + TARGET_MARGIN
    wsol_rows = [g for g in groups if not _is_reference(g[2])]
    if not wsol_rows:
        return "No WSOL row has finished yet."

    def tuned(group: tuple[str, str, list[dict[str, Any]]]) -> float:
        return _stat(_normed(group[2], choose_normalization(group[2])), "tune", _V2)[0]

    method, variant, runs = max(wsol_rows, key=tuned)
    norm = choose_normalization(runs)
    normed = _normed(runs, norm)
    fair, ref, top1 = _stat(normed, "fair", _V2)[0], _stat(normed, "val", _V2)[0], _stat(runs, "val", "top1")[0]
    count = f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
    text = (
        f"Best WSOL row on the tuning split: **{method}** ({variant}, {norm} normalisation, {count}): val "
        f"MaxBoxAccV2 {fair:.2f} with τ and normalisation from tuning, {ref:.2f} with the reference's τ on val; "
        f"target ≥ {target:.2f} (centre prior + {TARGET_MARGIN:g}) **{'met' if fair >= target else 'not met'}** "
        "(fair number)"
    )
    plain = [g for g in groups if g[0] == "cam"]
    if plain:
        cam_top1 = _stat(plain[0][2], "val", "top1")[0]
        text += f"; top-1 {top1:.2f} vs the plain CAM's {cam_top1:.2f} ({'not lower' if top1 >= cam_top1 else 'lower'})"
    return text + "."


def _plot(path: Path, grouped: Mapping[str, list], references: Mapping[str, dict[str, Any]]) -> None:
    from wsol.plots import ReferenceLine, ScatterPoint, plot_study_scatter

    panels = {}
    for regime, groups in grouped.items():
        points = []
        for method, _variant, runs in groups:
            (x, dx), (y, dy) = _stat(runs, "val", "top1"), _stat(runs, "fair", _V2)
            points.append(ScatterPoint(method, x, dx, y, dy, _stat(runs, "val", _V2)[0]))
        panels[f"regime {regime}"] = points
    target = references["center_gaussian"]["val"][_V2] + TARGET_MARGIN
    lines = [
        ReferenceLine(f"{name} (τ from tune)", references[name]["fair"][_V2], style)
        for name, style in (("center_gaussian", "--"), ("all_ones", ":"))
        if name in references
    ]
    baseline = references.get(_BASELINE)
    if baseline and baseline["name"] != "center_gaussian":
        lines.append(
            ReferenceLine(f"label-free baseline: {baseline['name']} (τ from tune)", baseline["fair"][_V2], "-.")
        )
    lines.append(ReferenceLine(f"target: centre + {TARGET_MARGIN:g}", target, "-", "red"))
    title = "mean ± std over seeds; filled: τ from the tuning split, hollow: reference τ on val"
    plot_study_scatter(path, panels, lines, title=title)


def write_report(
    out: Path,
    results: Sequence[dict[str, Any]],
    references: Mapping[str, dict[str, Any]],
    notes: Mapping[str, Sequence[str]] | None = None,
    chosen: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Path]:
    """Write ``results.csv`` (one row per run and reference row), ``results.md`` and ``results.png``.

    Args:
        out: Output folder.
        results: Run results (see :func:`wsol.study.runner.train_and_score`).
        references: The reference rows (``center_gaussian``, ``all_ones``, the saliency cues and their fusions with
            the prior) and ``label_free_baseline`` naming one of them (see :func:`wsol.study.scoring.reference_rows`).
        notes: Per regime, how variants and the combination were chosen.
        chosen: Per regime, method -> the variant chosen on the tuning split (see :func:`group_runs`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "markdown": out / "results.md", "plot": out / "results.png"}
    rows = _csv_rows(results, references)
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(paths["csv"], write_csv)
    grouped = group_runs(results, chosen)
    lines = ["# Small-data study: results", ""]
    for regime, groups in grouped.items():
        n_train = groups[0][2][0].get("n_train", "?")
        lines += [f"## Regime `{regime}` ({n_train} training images)", "", *_table(groups, references), ""]
        lines += _baseline_line(references)
        lines += [_verdict(groups, references), "", *_norm_table(groups)]
        lines += [f"- {note}" for note in (notes or {}).get(regime, [])] + [""]
    write_text(paths["markdown"], "\n".join(lines))
    if grouped:
        _plot(paths["plot"], grouped, references)
    return paths
