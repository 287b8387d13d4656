"""Benchmark outputs: JSON lines, a Markdown summary and a dependency-free SVG latency plot."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def append_jsonl(record: dict[str, Any], path: Path) -> None:
    """Append one record as one JSON line (written as soon as a configuration finishes)."""
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a results file.

    Raises:
        ValueError: a line is not a JSON object (naming the file and the line).
    """
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record: {err}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        records.append(record)
    return records


def drop_partial_line(path: Path) -> bool:
    """Cut a last line left half-written by a killed run (no newline at its end, or not JSON); True if one was cut.

    Every complete record is kept, so ``--append`` continues after the interruption.
    """
    data = path.read_bytes()
    if not data:
        return False
    head, _, last = data.rstrip(b"\n").rpartition(b"\n")
    try:
        json.loads(last)
    except ValueError:
        path.write_bytes(head + b"\n" if head else b"")
        return True
    if not data.endswith(b"\n"):  # whole, only its newline missing
        with path.open("ab") as file:
            file.write(b"\n")
    return False


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def _label(r: dict[str, Any]) -> str:
    return f"{r['provider']} {r['precision']}" + (" iobinding" if r.get("iobinding") else "")


def summary_markdown(records: list[dict[str, Any]]) -> str:
    """One table row per configuration, with the environment of the first record above it."""
    if not records:
        return "# ONNX Runtime benchmark\n\nNo configuration was measured.\n"
    env, first = records[0]["env"], records[0]
    lines = [f"# ONNX Runtime benchmark: {first['model']}", ""]
    facts = [
        f"onnxruntime {env['onnxruntime']} ({env['onnxruntime_build_device']} build)",
        f"Python {env['python']}",
        f"{env['cpu']} ({env['cpu_count']} logical cores)",
        f"GPU: {', '.join(env['gpu'])}" if env.get("gpu") else "GPU: none",
        f"TensorRT {env['tensorrt']}" if env.get("tensorrt") else None,
        f"{env['platform']}",
        f"measured {env['timestamp']}",
    ]
    if env.get("jetson"):
        mode, clocks = env.get("nvpmodel") or {}, env.get("jetson_clocks") or {}
        facts += [
            f"{env.get('device_model') or 'Jetson'}, L4T {env.get('l4t')}, JetPack {env.get('jetpack')}",
            f"nvpmodel {mode.get('mode', mode.get('error'))}, jetson_clocks on: {clocks.get('on')}",
        ]
    lines += ["* " + f for f in facts if f]
    lines += [
        f"* model `{first['model']}` (sha256 {first['model_sha256'][:12]}, opset {first.get('opset')}, "
        f"cams {first.get('cams')}), input {first['input_shape'][1:]}",
        f"* latency: {first['latency_kind']} wall time of one run() call; parity against CPU FP32 outputs",
        "",
    ]
    base = {(r["batch"]): r for r in records if r["precision"] == "fp32" and r["provider"] == first["provider"]}
    lines += [
        f"| provider | precision | batch | p50 ms | p90 ms | p99 ms | images/s | vs {first['provider']} fp32 "
        "| load s | first run s | engine build s | peak RSS MB | J/image | top-1 agree | CAM max Δ | IoU@0.5 "
        "| parity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lat, par, power = r["latency_ms"], r["parity"], r.get("power") or {}
        ref = base.get(r["batch"])
        speedup = r["throughput_ips"] / ref["throughput_ips"] if ref else None
        cold = r.get("cold_start") or {}
        build = (cold["load_s"] + cold["first_run_s"]) if cold else None
        lines.append(
            f"| {r['provider']} | {r['precision']} | {r['batch']} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
            f"{lat['p99']:.2f} | {r['throughput_ips']:.1f} | {_fmt(speedup)}× | {r['start']['load_s']:.2f} | "
            f"{r['start']['first_run_s']:.3f} | {_fmt(build, '.1f')} | {r['memory']['peak_rss_mb']:.0f} | "
            f"{_fmt(power.get('j_per_image'), '.4f')} | {_fmt(par.get('top1_agree'), '.3f')} | "
            f"{_fmt(par.get('cam_max_abs'), '.1e')} | {_fmt(par.get('cam_iou@0.5'), '.3f')} | "
            f"{'pass' if par['pass'] else 'FAIL'} |"
        )
    lines += ["", f"{sum(r['latency_ms']['n'] for r in records)} timed runs in {len(records)} configurations."]
    return "\n".join(lines) + "\n"


def latency_svg(records: list[dict[str, Any]], width: int = 640, height: int = 380) -> str:
    """p50 latency per batch size, one line per provider/precision, whiskers from p50 to p99."""
    series: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        series.setdefault(_label(r), []).append(r)
    batches = sorted({r["batch"] for r in records})
    ymax = max((r["latency_ms"]["p99"] for r in records), default=1.0) * 1.1 or 1.0
    left, right, top, bottom = 64, 170, 30, 50
    pw, ph = width - left - right, height - top - bottom

    def x(batch: int) -> float:
        return left + (batches.index(batch) + 0.5) * pw / max(len(batches), 1)

    def y(ms: float) -> float:
        return top + ph * (1.0 - ms / ymax)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>',
        f'<text x="{left}" y="18">latency per run (ms): p50, whisker to p99</text>',
        f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">batch size</text>',
    ]
    for i in range(6):
        ms = ymax * i / 5
        out.append(f'<line x1="{left - 4}" x2="{left}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#444"/>')
        out.append(f'<text x="{left - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:.3g}</text>')
    for b in batches:
        out.append(f'<text x="{x(b):.1f}" y="{top + ph + 16}" text-anchor="middle">{b}</text>')
    for i, (label, rows) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        rows = sorted(rows, key=lambda r: r["batch"])
        pts = " ".join(f"{x(r['batch']):.1f},{y(r['latency_ms']['p50']):.1f}" for r in rows)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for r in rows:
            cx, lat = x(r["batch"]), r["latency_ms"]
            out.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lat["p50"]):.1f}" y2="{y(lat["p99"]):.1f}" '
                f'stroke="{color}"/>'
            )
            out.append(f'<circle cx="{cx:.1f}" cy="{y(lat["p50"]):.1f}" r="3" fill="{color}"/>')
        ly = top + 14 + 18 * i
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{left + pw + 28}" y="{ly}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_reports(records: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``latency.svg`` into ``out_dir``; returns their paths."""
    summary, plot = out_dir / "summary.md", out_dir / "latency.svg"
    summary.write_text(summary_markdown(records))
    plot.write_text(latency_svg(records))
    return summary, plot
