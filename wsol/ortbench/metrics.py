"""Timing statistics and task-level agreement of outputs (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Reduced-precision gates (chosen for random weights): CAM max |d|, IoU of CAM > 0.5 masks, top-1.
GATES = {
    "fp32": {"cam_max_abs": 1e-3, "cam_iou@0.5": 0.99, "top1_agree": 1.0},
    "fp16": {"cam_max_abs": 1e-2, "cam_iou@0.5": 0.98, "top1_agree": 0.99},
    "int8": {"cam_max_abs": None, "cam_iou@0.5": 0.9, "top1_agree": 0.95},
}


def latency_stats(seconds: list[float], batch: int) -> dict[str, Any]:
    """Latency percentiles in ms and throughput in images/s from per-run wall times."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    pct = np.percentile(ms, [50, 90, 95, 99])
    return {
        "latency_ms": {
            "mean": float(ms.mean()),
            "std": float(ms.std()),
            "min": float(ms.min()),
            "p50": float(pct[0]),
            "p90": float(pct[1]),
            "p95": float(pct[2]),
            "p99": float(pct[3]),
            "max": float(ms.max()),
            "n": int(ms.size),
        },
        "throughput_ips": float(batch * ms.size / (ms.sum() / 1e3)),
    }


def compare_outputs(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], precision: str, threshold: float = 0.5
) -> dict[str, Any]:
    """Task-level agreement with the FP32 reference: top-1, logits and CAM |d|, IoU of CAM masks."""
    out: dict[str, Any] = {}
    if "logits" in ref:
        out["logits_max_abs"] = float(np.abs(got["logits"] - ref["logits"]).max())
        out["top1_agree"] = float((got["logits"].argmax(1) == ref["logits"].argmax(1)).mean())
    if "cams" in ref:
        diff = np.abs(got["cams"].astype(np.float32) - ref["cams"])
        out["cam_max_abs"], out["cam_mean_abs"] = float(diff.max()), float(diff.mean())
        a = (ref["cams"] > threshold).reshape(-1, ref["cams"].shape[-2] * ref["cams"].shape[-1])
        b = (got["cams"] > threshold).reshape(a.shape)
        inter, union = (a & b).sum(1), (a | b).sum(1)
        out["cam_iou@0.5"] = float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())
    gate = GATES[precision]
    out["gate"] = {k: v for k, v in gate.items() if v is not None}
    checks = [
        out.get("cam_max_abs", 0.0) <= gate["cam_max_abs"] if gate["cam_max_abs"] is not None else True,
        out.get("cam_iou@0.5", 1.0) >= gate["cam_iou@0.5"],
        out.get("top1_agree", 1.0) >= gate["top1_agree"],
    ]
    out["pass"] = all(checks)
    return out
