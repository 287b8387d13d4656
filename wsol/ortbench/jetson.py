"""Jetson-only measurements: power mode, clock lock and per-rail power from tegrastats.

Everything here parses plain text, so it is tested against recorded ``nvpmodel -q``,
``jetson_clocks --show`` and tegrastats samples. Rail power is module/SoC power read from the on-board
INA3221 monitors, not wall power: do not compare it with MLPerf's wall-power figures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

RELEASE_FILE = "/etc/nv_tegra_release"
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
_FREQ = re.compile(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)")


def is_jetson(release_file: str = RELEASE_FILE) -> bool:
    """Whether this machine is a Jetson (L4T writes ``/etc/nv_tegra_release``)."""
    return Path(release_file).is_file()


def read_l4t_release(release_file: str = RELEASE_FILE) -> str | None:
    """The L4T release, e.g. ``"R35.3.1"`` from ``# R35 (release), REVISION: 3.1, ...``."""
    try:
        text = Path(release_file).read_text()
    except OSError:
        return None
    match = _L4T.search(text)
    return f"R{match.group(1)}.{match.group(2)}" if match else None


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """Parse ``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id on the next line."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not match:
        raise ValueError(f"not nvpmodel -q output: {text[:80]!r}")
    rest = text[match.end() :].split()
    mode_id = int(rest[0]) if rest and rest[0].isdigit() else None
    return {"mode": match.group(1), "id": mode_id}


def parse_jetson_clocks(text: str) -> dict[str, Any]:
    """Parse ``jetson_clocks --show``; clocks count as locked when every online CPU and the GPU have
    ``MinFreq == MaxFreq`` (what ``jetson_clocks`` sets) and the EMC override, if listed, is on."""
    cpus = []
    gpu = emc = None
    fan = None
    for line in text.splitlines():
        line = line.strip()
        freq = _FREQ.search(line)
        if re.match(r"cpu\d+:", line) and "Online=1" in line and freq:
            cpus.append(freq.group(1) == freq.group(2))
        elif line.startswith("GPU ") and freq:
            gpu = {"min": int(freq.group(1)), "max": int(freq.group(2)), "cur": int(freq.group(3))}
        elif line.startswith("EMC ") and freq:
            override = re.search(r"FreqOverride=(\d)", line)
            emc = {"cur": int(freq.group(3)), "override": bool(int(override.group(1))) if override else None}
        elif line.lower().startswith("fan"):
            pwm = re.search(r"pwm=(\d+)", line, flags=re.IGNORECASE)
            fan = int(pwm.group(1)) if pwm else None
    if not cpus and gpu is None:
        raise ValueError(f"not jetson_clocks --show output: {text[:80]!r}")
    gpu_locked = gpu is not None and gpu["min"] == gpu["max"]
    on = bool(cpus) and all(cpus) and gpu_locked and (emc is None or emc["override"] is not False)
    return {"on": on, "cpus_locked": bool(cpus) and all(cpus), "gpu": gpu, "emc": emc, "fan_pwm": fan}


def parse_tegrastats_line(line: str) -> dict[str, Any]:
    """One tegrastats line -> RAM (MB), GPU load (%), rail power (mW, instantaneous) and temperatures.

    Sensors that are absent report -256C and are dropped.
    """
    ram = _RAM.search(line)
    gr3d = _GR3D.search(line)
    rails = {name: int(cur) for name, cur, _avg in _RAIL.findall(line)}
    temps = {name: float(t) for name, t in _TEMP.findall(line) if float(t) > -200.0}
    return {
        "ram_used_mb": int(ram.group(1)) if ram else None,
        "ram_total_mb": int(ram.group(2)) if ram else None,
        "gr3d_pct": int(gr3d.group(1)) if gr3d else None,
        "rails_mw": rails,
        "temps_c": temps,
    }


def total_power_mw(rails: dict[str, float]) -> tuple[float | None, str]:
    """Module power and how it was formed: ``VDD_IN`` (module input, Orin NX/Nano) when reported,
    else the sum of all reported rails (AGX Orin has no input rail)."""
    if not rails:
        return None, "none"
    if "VDD_IN" in rails:
        return float(rails["VDD_IN"]), "VDD_IN"
    return float(sum(rails.values())), "sum of rails " + "+".join(sorted(rails))


def summarize_power(
    samples: list[dict[str, Any]],
    images: int,
    seconds: float,
    idle_total_mw: float | None = None,
    interval_ms: int = 100,
) -> dict[str, Any]:
    """Mean rail power over the timed window and joules per image (mean W x seconds / images)."""
    rails = [s["rails_mw"] for s in samples if s["rails_mw"]]
    if not rails:
        return {"source": "tegrastats", "samples": 0, "error": "no tegrastats samples in the timed window"}
    names = sorted({name for r in rails for name in r})
    mean = {n: sum(r.get(n, 0) for r in rails) / len(rails) for n in names}
    total, rule = total_power_mw(mean)
    out: dict[str, Any] = {
        "source": "tegrastats",
        "interval_ms": interval_ms,
        "samples": len(rails),
        "rails_mw_mean": {n: round(v, 1) for n, v in mean.items()},
        "total_mw_mean": round(total, 1) if total is not None else None,
        "total_rule": rule,
        "j_per_image": total / 1000.0 * seconds / images if total is not None and images else None,
    }
    loads = [s["gr3d_pct"] for s in samples if s["gr3d_pct"] is not None]
    out["gr3d_pct_mean"] = round(sum(loads) / len(loads), 1) if loads else None
    temps = [t for s in samples for t in s["temps_c"].values()]
    out["temp_c_max"] = max(temps) if temps else None
    ram = [s["ram_used_mb"] for s in samples if s["ram_used_mb"] is not None]
    out["ram_used_mb_peak"] = max(ram) if ram else None
    if idle_total_mw is not None and total is not None and images:
        out["idle_total_mw"] = round(idle_total_mw, 1)
        out["j_per_image_above_idle"] = (total - idle_total_mw) / 1000.0 * seconds / images
    return out


def run_tool(args: list[str], timeout: float = 15.0) -> tuple[str | None, str | None]:
    """Run a board tool, then retry through ``sudo -n`` (never prompts); returns (stdout, error)."""
    if shutil.which(args[0]) is None:
        return None, f"{args[0]} not found"
    error = None
    for cmd in (args, ["sudo", "-n"] + args):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            error = str(err)
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout, None
        error = (proc.stderr or proc.stdout).strip()[:200] or f"exit code {proc.returncode}"
    return None, error


def query_power_mode() -> dict[str, Any]:
    """``nvpmodel -q`` parsed, or ``{"error": ...}``."""
    text, error = run_tool(["nvpmodel", "-q"])
    if text is None:
        return {"error": error}
    try:
        return parse_nvpmodel(text)
    except ValueError as err:
        return {"error": str(err)}


def query_clocks() -> dict[str, Any]:
    """Whether ``jetson_clocks`` is on: from ``jetson_clocks --show`` (needs root), else from cpufreq."""
    text, error = run_tool(["jetson_clocks", "--show"])
    if text is not None:
        try:
            return dict(parse_jetson_clocks(text), source="jetson_clocks --show")
        except ValueError as err:
            error = str(err)
    # Without root, cpufreq still tells whether the CPU clocks are pinned (min == max); the GPU is unknown.
    pinned = []
    for policy in sorted(Path("/sys/devices/system/cpu/cpufreq").glob("policy*")):
        try:
            lo, hi = ((policy / f).read_text().strip() for f in ("scaling_min_freq", "scaling_max_freq"))
        except OSError:
            continue
        pinned.append(lo == hi)
    if not pinned:
        return {"on": None, "error": error}
    return {"on": None, "cpus_locked": all(pinned), "source": "cpufreq (GPU unknown)", "error": error}


class TegrastatsSampler:
    """Runs ``tegrastats --interval N`` for the duration of a ``with`` block and parses its lines."""

    def __init__(self, interval_ms: int = 100, executable: str = "tegrastats") -> None:
        self.interval_ms = int(interval_ms)
        self.executable = executable
        self.samples: list[dict[str, Any]] = []
        self.error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TegrastatsSampler:
        path = shutil.which(self.executable)
        if path is None:
            self.error = f"{self.executable} not found"
            return self
        self._proc = subprocess.Popen(
            [path, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self.samples.append(parse_tegrastats_line(line))

    def __exit__(self, *exc: Any) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.samples:
            self.error = "tegrastats produced no lines"


def measure_idle_power(seconds: float, interval_ms: int = 100, executable: str = "tegrastats") -> float | None:
    """Mean module power (mW) over ``seconds`` of doing nothing, the baseline for marginal energy."""
    with TegrastatsSampler(interval_ms, executable) as idle:
        time.sleep(seconds)
    values = [total_power_mw(s["rails_mw"])[0] for s in idle.samples if s["rails_mw"]]
    return sum(values) / len(values) if values else None
