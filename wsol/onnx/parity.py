"""Parity of an exported graph: onnxruntime on CPU against the PyTorch module it was traced from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsol.onnx.wrapper import ExportWrapper


def check_parity(
    wrapper: ExportWrapper,
    onnx_path: str | Path,
    batches: tuple[int, ...] = (1, 3),
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Compare the ONNX graph in onnxruntime (CPU) with the PyTorch wrapper on seeded random inputs (of the export's
    size, or ``size`` for a graph exported with a dynamic size).

    Returns:
        ``logits_max_abs``, ``cams_max_abs``, ``cams_mean_abs``, ``top1_agree`` (fraction), the
        tolerances, the batch sizes and ``pass``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = {"logits": 0.0, "cams": 0.0}
    cam_sum, cam_count, agree, total, within = 0.0, 0, 0, 0, True
    for batch in batches:
        images = rng.standard_normal((batch, 3, *(size or wrapper.image_size)), dtype=np.float32)
        with torch.no_grad():
            ref = [t.cpu().numpy() for t in wrapper(torch.from_numpy(images).to(wrapper.device))]
        got = session.run(["logits", "cams"], {"images": images})
        for name, r, g in zip(("logits", "cams"), ref, got, strict=True):
            if r.shape != g.shape:
                raise ValueError(f"{name}: onnxruntime shape {g.shape} != PyTorch shape {r.shape} at batch {batch}")
            diff = np.abs(g - r)
            worst[name] = max(worst[name], float(diff.max()))
            within &= bool(np.all(diff <= atol + rtol * np.abs(r)))
        cam_diff = np.abs(got[1] - ref[1])
        cam_sum, cam_count = cam_sum + float(cam_diff.sum()), cam_count + cam_diff.size
        agree += int((got[0].argmax(1) == ref[0].argmax(1)).sum())
        total += batch
    result = {
        "batches": list(batches),
        "logits_max_abs": worst["logits"],
        "cams_max_abs": worst["cams"],
        "cams_mean_abs": cam_sum / max(cam_count, 1),
        "top1_agree": agree / max(total, 1),
        "atol": atol,
        "rtol": rtol,
    }
    result["pass"] = within and agree == total
    return result
