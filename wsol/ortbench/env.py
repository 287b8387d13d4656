"""Environment metadata and memory measurement for benchmark records (stdlib + onnxruntime only)."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import jetson


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi(query: str) -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def _tensorrt_version() -> str | None:
    try:
        import tensorrt  # noqa: F401  (only its version is wanted)

        return str(tensorrt.__version__)
    except Exception:  # any failure means "unknown", never a crash of the benchmark
        pass
    if shutil.which("dpkg-query"):
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "tensorrt"], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    return None


def _jetpack_version() -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def environment(on_jetson: bool = False) -> dict[str, Any]:
    """Versions and platform of this run; on a Jetson also L4T, JetPack, power mode and clocks."""
    import numpy as np
    import onnxruntime as ort

    gpus = _nvidia_smi("gpu=name,driver_version,memory.total")
    env: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "onnxruntime_build_device": ort.get_device(),
        "available_providers": list(ort.get_available_providers()),
        "numpy": np.__version__,
        "gpu": [g.split(", ")[0] for g in gpus] or None,
        "driver": gpus[0].split(", ")[1] if gpus else None,
        "tensorrt": _tensorrt_version(),
        "jetson": on_jetson,
    }
    if on_jetson:
        env["l4t"] = jetson.read_l4t_release()
        env["jetpack"] = _jetpack_version()
        try:
            env["device_model"] = Path("/proc/device-tree/model").read_text().strip("\x00\n ")
        except OSError:
            env["device_model"] = None
        env["nvpmodel"] = jetson.query_power_mode()
        env["jetson_clocks"] = jetson.query_clocks()
    return env


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss` (or process start), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class GpuMemorySampler:
    """Polls ``nvidia-smi`` for this process's GPU memory while a ``with`` block runs (x86 GPUs).

    On a Jetson the GPU shares system RAM; tegrastats' RAM figure is recorded instead.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuMemorySampler:
        if shutil.which("nvidia-smi") is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        pid = str(os.getpid())
        while not self._stop.is_set():
            for line in _nvidia_smi("compute-apps=pid,used_memory"):
                fields = [f.strip() for f in line.split(",")]
                if len(fields) == 2 and fields[0] == pid and fields[1].isdigit():
                    self.peak_mb = max(self.peak_mb or 0.0, float(fields[1]))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
