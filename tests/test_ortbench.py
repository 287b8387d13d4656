"""The onnxruntime benchmark runner: JSON lines and summary on CPU, provider failures, Jetson parsing.

The Jetson parts run against recorded ``nvpmodel -q``, ``jetson_clocks --show`` and tegrastats output,
written here as text and, for the end-to-end test, served by stand-in executables on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from wsol.ortbench import (
    BenchOptions,
    ProviderError,
    Runner,
    compare_outputs,
    latency_stats,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats_line,
    resolve_providers,
    summarize_power,
)
from wsol.ortbench.cli import main as ortbench_main
from wsol.ortbench.runner import ort_version

REPO = Path(__file__).resolve().parents[1]

# AGX Orin (JetPack 5 format: timestamp first; absent sensors at -256C), two consecutive lines.
TEGRA_AGX = [
    "08-14-2024 10:21:07 RAM 5321/62841MB (lfb 9721x4MB) SWAP 0/31421MB (cached 0MB) "
    "CPU [12%@2201,9%@2201,4%@2201,3%@2201,0%@2201,1%@2201,0%@2201,0%@2201,2%@2201,0%@2201,0%@2201,1%@2201] "
    "EMC_FREQ 21%@3199 GR3D_FREQ 97%@[1300,1300] VIC_FREQ 729 APE 174 CV0@-256C CPU@52.156C SOC2@48.468C "
    "SOC0@49.531C CV1@-256C GPU@50.593C tj@52.156C SOC1@47.531C CV2@-256C "
    "VDD_GPU_SOC 12847mW/12712mW VDD_CPU_CV 2371mW/2349mW VIN_SYS_5V0 5428mW/5410mW VDDQ_VDD2_1V8AO 1915mW/1903mW",
    "08-14-2024 10:21:07 RAM 5330/62841MB (lfb 9721x4MB) SWAP 0/31421MB (cached 0MB) "
    "CPU [10%@2201,8%@2201,4%@2201,3%@2201,0%@2201,1%@2201,0%@2201,0%@2201,2%@2201,0%@2201,0%@2201,1%@2201] "
    "EMC_FREQ 22%@3199 GR3D_FREQ 99%@[1300,1300] VIC_FREQ 729 APE 174 CV0@-256C CPU@51.9C SOC2@48.5C "
    "SOC0@49.6C CV1@-256C GPU@50.8C tj@51.9C SOC1@47.6C CV2@-256C "
    "VDD_GPU_SOC 13247mW/12900mW VDD_CPU_CV 2371mW/2355mW VIN_SYS_5V0 5528mW/5450mW VDDQ_VDD2_1V8AO 1915mW/1905mW",
]
# Orin NX reports the module input rail VDD_IN, which is the total.
TEGRA_NX = (
    "RAM 3456/15656MB (lfb 2x4MB) SWAP 0/7828MB (cached 0MB) CPU [5%@1984,3%@1984,off,off] "
    "GR3D_FREQ 45%@[611,611] cpu@45.5C soc2@43.9C VDD_IN 9876mW/9500mW VDD_CPU_GPU_CV 3456mW/3300mW "
    "VDD_SOC 2345mW/2300mW"
)
NVPMODEL_MAXN = "NV Power Mode: MAXN\n0\n"
CPU_LINE = "cpu{i}: Online=1 Governor=schedutil MinFreq={lo} MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0"
CLOCKS_ON = "\n".join(
    ["SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit", "Online CPUs: 0-11"]
    + [CPU_LINE.format(i=i, lo=2201600) for i in range(12)]
    + [
        "GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000",
        "EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1",
        "DLA0_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000",
        "FAN Dynamic Speed control=active hwmon4_pwm=255",
        "NV Power Mode: MAXN",
    ]
)
CLOCKS_OFF = (
    CLOCKS_ON.replace("MinFreq=2201600", "MinFreq=115200")
    .replace("GPU MinFreq=1300500000", "GPU MinFreq=306000000")
    .replace("FreqOverride=1", "FreqOverride=0")
)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A small exported model (ResNet-10 at width 8, 5 classes, 64 px) with its sidecar."""
    from wsol.onnx import build_backbone_model, export_onnx

    model, _ = build_backbone_model("resnet10", num_classes=5, backbone_kwargs={"width": 8}, seed=0)
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(model, out, image_size=(64, 64), parity=False)
    return out


def quick(model: Path, out: Path, **kw) -> BenchOptions:
    base = {"iters": 3, "min_time_s": 0.0, "warmup_iters": 1, "warmup_s": 0.0, "parity_images": 4, "jetson": "off"}
    return BenchOptions(model=str(model), out_dir=str(out), **{**base, **kw})


# ------------------------------------------------------------------------------------ pure functions
def test_latency_stats_percentiles_and_throughput() -> None:
    stats = latency_stats([0.001, 0.002, 0.003, 0.004], batch=8)
    lat = stats["latency_ms"]
    assert lat["mean"] == pytest.approx(2.5) and lat["p50"] == pytest.approx(2.5)
    assert lat["p90"] == pytest.approx(3.7) and lat["min"] == pytest.approx(1.0) and lat["n"] == 4
    assert stats["throughput_ips"] == pytest.approx(8 * 4 / 0.010)


def test_compare_outputs_against_hand_values() -> None:
    ref_cams = np.zeros((2, 1, 2, 2), np.float32)
    ref_cams[0, 0, 0] = 1.0  # mask: top row
    ref_cams[1, 0, :, 0] = 0.9  # mask: left column
    got_cams = ref_cams.copy()
    got_cams[0, 0, 1, 0] = 0.6  # one extra pixel: IoU 2/3
    ref = {"logits": np.array([[1.0, 2.0], [3.0, 0.0]]), "cams": ref_cams}
    got = {"logits": np.array([[1.0, 2.5], [0.0, 3.0]]), "cams": got_cams}
    out = compare_outputs(ref, got, "fp16")
    assert out["top1_agree"] == 0.5 and out["logits_max_abs"] == 3.0
    assert out["cam_max_abs"] == pytest.approx(0.6) and out["cam_iou@0.5"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["pass"] is False
    assert compare_outputs(ref, ref, "fp32")["pass"] is True


def test_resolve_providers_fails_clearly_for_missing_ones() -> None:
    assert resolve_providers(["cpu", "trt"], ["TensorrtExecutionProvider", "CPUExecutionProvider"]) == [
        ("cpu", "CPUExecutionProvider"),
        ("tensorrt", "TensorrtExecutionProvider"),
    ]
    with pytest.raises(ProviderError, match=r"'cuda' \(CUDAExecutionProvider\) is not available.*CPUExecutionProvider"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])
    with pytest.raises(ProviderError, match="unknown provider 'rocm'"):
        resolve_providers(["rocm"], ["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------- CPU run
def test_cpu_run_writes_json_lines_summary_and_plot(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "res"
    flags = "--batch-sizes 1,2 --fp16 --int8 --iters 3 --min-time-s 0 --warmup-iters 1 --warmup-s 0 --jetson off"
    argv = ["--model", str(tiny_onnx), "--out", str(out), "--parity-images", "4", *flags.split()]
    assert ortbench_main(argv) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["precision"], r["batch"]) for r in records] == [(p, b) for p in ("fp32", "fp16", "int8") for b in (1, 2)]
    for r in records:
        lat = r["latency_ms"]
        assert lat["n"] >= 3 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["throughput_ips"] == pytest.approx(r["batch"] * lat["n"] / (lat["mean"] * lat["n"] / 1e3))
        assert r["providers_applied"] == ["CPUExecutionProvider"] and r["provider"] == "cpu"
        assert r["start"]["load_s"] > 0 and r["start"]["first_run_s"] > 0 and r["cold_start"] is None
        assert r["memory"]["peak_rss_mb"] > 10 and r["power"] is None
        assert r["env"]["onnxruntime"] and r["env"]["python"] == ".".join(map(str, sys.version_info[:3]))
        assert r["cams"] == "top1" and r["opset"] == 17 and r["input_shape"] == [r["batch"], 3, 64, 64]
        assert r["parity"]["images"] == 4 and set(r["parity"]) >= {"top1_agree", "cam_max_abs", "cam_iou@0.5"}
    fp32, fp16, int8 = records[0]["parity"], records[2]["parity"], records[4]["parity"]
    assert fp32["cam_max_abs"] == 0.0 and fp32["top1_agree"] == 1.0 and fp32["pass"]
    assert 0 < fp16["cam_max_abs"] < 1e-2 and fp16["cam_iou@0.5"] > 0.95  # a real FP16 graph, close to FP32
    assert int8["cam_max_abs"] > fp16["cam_max_abs"] and "timing only" in records[4]["calibration"]
    assert {r["model_file"] for r in records} == {"tiny.onnx", "tiny.fp16.onnx", "tiny.int8.onnx"}

    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| cpu |")]
    assert len(rows) == 6 and "| cpu | int8 | 2 |" in summary and "onnxruntime" in summary
    svg = ET.fromstring((out / "latency.svg").read_text())
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3  # one per provider/precision series
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 6


def test_unavailable_provider_fails_before_writing(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    from wsol.cli import main as wsol_main

    out = tmp_path / "res"
    code = wsol_main(["bench", "onnx", "--model", str(tiny_onnx), "--providers", "cpu,tensorrt", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "wsol bench: error: requested provider 'tensorrt' (TensorrtExecutionProvider)" in err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_not_applied_is_an_error(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    import onnxruntime as ort

    # A GPU build on a machine whose CUDA libraries do not load lists CUDA but runs on CPU.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    runner = Runner(quick(tiny_onnx, tmp_path, providers=["cuda"], allow_cpu_fallback=True, batch_sizes=[1]))
    with pytest.raises(ProviderError, match=r"'cuda' \(CUDAExecutionProvider\) was not applied.*CPUExecutionProvider"):
        runner.run()
    strict = Runner(quick(tiny_onnx, tmp_path, providers=["cuda"], batch_sizes=[1]))
    with pytest.raises(ProviderError, match="cuda"):
        strict.run()


def test_script_runs_without_torch_or_wsol(tiny_onnx: Path, tmp_path: Path) -> None:
    # The device flow: copy the ortbench folder alone and run it with torch and wsol unimportable.
    shutil.copytree(REPO / "wsol" / "ortbench", tmp_path / "ortbench")
    block = "import sys, runpy; sys.modules['torch'] = None; sys.modules['wsol'] = None; "
    flags = "--batch-sizes 2 --iters 2 --min-time-s 0 --warmup-iters 1 --warmup-s 0 --jetson off"
    args = ["--model", str(tiny_onnx), "--out", str(tmp_path / "res"), *flags.split()]
    code = block + f"sys.argv = ['ortbench', *{args!r}]; runpy.run_module('ortbench', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "res" / "results.jsonl").read_text())
    assert record["batch"] == 2 and record["parity"]["pass"] and (tmp_path / "res" / "summary.md").is_file()

    script = REPO / "benchmarks" / "onnx_bench.py"
    code = block + f"sys.argv = ['onnx_bench', '--model', {str(tiny_onnx)!r}, '--providers', 'cuda']; "
    code += f"runpy.run_path({str(script)!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "requested provider 'cuda'" in proc.stderr


class _FakeTensorRTSession:
    """A CPU session that reports the TensorRT provider and writes an engine file, as the TRT EP would."""

    def __init__(self, real, cache: Path) -> None:
        self._real = real
        (cache / "TensorrtExecutionProvider_TRTKernel_graph_main.engine").write_bytes(b"engine")

    def get_providers(self) -> list[str]:
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_tensorrt_engine_cache_cold_and_warm_start(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    real_session = Runner._session
    created = []

    def fake_session(self, path, ep, ep_options, cpu_fallback):
        session = real_session(self, path, "CPUExecutionProvider", {}, True)
        if ep != "TensorrtExecutionProvider":
            return session
        created.append((Path(path).name, dict(ep_options), cpu_fallback))
        return _FakeTensorRTSession(session, Path(ep_options["trt_engine_cache_path"]))

    monkeypatch.setattr(Runner, "_session", fake_session)
    cache = tmp_path / "cache"
    opts = quick(tiny_onnx, tmp_path / "res", providers=["tensorrt"], fp16=True, batch_sizes=[2])
    opts.trt_cache_dir = str(cache)
    fp32, fp16 = Runner(opts).run()
    assert fp32["cold_start"]["engine_cache"] == "miss" and fp32["start"]["engine_cache"] == "hit"
    assert fp16["model_file"] == "tiny.onnx"  # TensorRT builds FP16 from the FP32 graph
    assert len(created) == 4  # cold + warm per precision
    name, options, cpu_fallback = created[-1]
    assert options["trt_fp16_enable"] and not options["trt_int8_enable"] and not cpu_fallback
    assert options["trt_profile_min_shapes"] == options["trt_profile_max_shapes"] == "images:2x3x64x64"
    assert options["trt_engine_cache_enable"] and Path(options["trt_engine_cache_path"]).parent == cache
    assert "-fp16-b2-" in options["trt_engine_cache_path"]

    assert options["trt_timing_cache_path"] == str(cache)  # onnxruntime >= 1.17

    # onnxruntime 1.14 (JetPack 5 wheels) knows neither explicit profiles nor the timing-cache path.
    with monkeypatch.context() as patch:
        patch.setattr(ort, "__version__", "1.14.1")
        old_options = Runner(opts)._trt_options("fp32", 2, cache)
    assert "trt_profile_min_shapes" not in old_options and "trt_timing_cache_path" not in old_options
    assert ort_version("1.16.3") == (1, 16) and ort_version("1.32.0+cu126") == (1, 32)

    again = Runner(opts).run()[0]  # engines cached: nothing to build
    assert again["cold_start"] is None and again["start"]["engine_cache"] == "hit" and len(created) == 6
    opts.rebuild_engines = True
    rebuilt = Runner(opts).run()[0]
    assert rebuilt["cold_start"]["engine_cache"] == "miss" and len(created) == 10


# ------------------------------------------------------------------------------------- Jetson parts
def test_parse_recorded_tegrastats_lines() -> None:
    agx = parse_tegrastats_line(TEGRA_AGX[0])
    assert agx["rails_mw"] == {"VDD_GPU_SOC": 12847, "VDD_CPU_CV": 2371, "VIN_SYS_5V0": 5428, "VDDQ_VDD2_1V8AO": 1915}
    assert agx["ram_used_mb"] == 5321 and agx["ram_total_mb"] == 62841 and agx["gr3d_pct"] == 97
    assert agx["temps_c"]["CPU"] == 52.156 and "CV0" not in agx["temps_c"]  # -256C: sensor absent
    nx = parse_tegrastats_line(TEGRA_NX)
    assert nx["rails_mw"]["VDD_IN"] == 9876 and nx["gr3d_pct"] == 45


def test_power_summary_and_energy_per_image() -> None:
    samples = [parse_tegrastats_line(line) for line in TEGRA_AGX]
    power = summarize_power(samples, images=100, seconds=2.0, idle_total_mw=10000.0)
    # Totals 22561 and 23061 mW (sum of the four rails; AGX Orin has no VDD_IN): mean 22811 mW.
    assert power["total_mw_mean"] == pytest.approx(22811.0) and power["total_rule"].startswith("sum of rails")
    assert power["rails_mw_mean"]["VDD_GPU_SOC"] == pytest.approx(13047.0)
    assert power["j_per_image"] == pytest.approx(22.811 * 2.0 / 100)
    assert power["j_per_image_above_idle"] == pytest.approx(12.811 * 2.0 / 100)
    assert power["gr3d_pct_mean"] == 98.0 and power["temp_c_max"] == 52.156 and power["ram_used_mb_peak"] == 5330
    nx = summarize_power([parse_tegrastats_line(TEGRA_NX)], images=10, seconds=1.0)
    assert nx["total_mw_mean"] == 9876.0 and nx["total_rule"] == "VDD_IN"
    assert summarize_power([], images=10, seconds=1.0)["samples"] == 0


def test_parse_nvpmodel_and_jetson_clocks() -> None:
    assert parse_nvpmodel(NVPMODEL_MAXN) == {"mode": "MAXN", "id": 0}
    assert parse_nvpmodel("NV Power Mode: MODE_30W\n2\n") == {"mode": "MODE_30W", "id": 2}
    with pytest.raises(ValueError):
        parse_nvpmodel("nvpmodel: command failed")
    on, off = parse_jetson_clocks(CLOCKS_ON), parse_jetson_clocks(CLOCKS_OFF)
    assert on["on"] is True and on["gpu"]["max"] == 1300500000 and on["emc"]["override"] and on["fan_pwm"] == 255
    assert off["on"] is False and not off["cpus_locked"] and off["emc"]["override"] is False


def _fake_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_jetson_run_records_power_mode_clocks_and_energy(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "tegra.txt").write_text(TEGRA_AGX[0] + "\n")
    _fake_tool(bin_dir, "nvpmodel", f"printf '{NVPMODEL_MAXN}'")
    (tmp_path / "clocks.txt").write_text(CLOCKS_ON + "\n")
    _fake_tool(bin_dir, "jetson_clocks", f"cat '{tmp_path / 'clocks.txt'}'")
    _fake_tool(bin_dir, "tegrastats", f"while true; do cat '{tmp_path / 'tegra.txt'}'; sleep 0.05; done")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    opts = quick(tiny_onnx, tmp_path / "res", jetson="on", batch_sizes=[1], min_time_s=0.4, idle_s=0.2)
    record = Runner(opts).run()[0]
    env, power = record["env"], record["power"]
    assert env["jetson"] and env["nvpmodel"] == {"mode": "MAXN", "id": 0}
    assert env["jetson_clocks"]["on"] is True and env["jetson_clocks"]["source"] == "jetson_clocks --show"
    assert power["samples"] >= 2 and power["rails_mw_mean"]["VIN_SYS_5V0"] == 5428.0
    assert power["total_mw_mean"] == 22561.0 and power["idle_total_mw"] == 22561.0
    images = record["batch"] * record["latency_ms"]["n"]
    assert power["j_per_image"] == pytest.approx(22.561 * record["timed_s"] / images)
    assert power["j_per_image_above_idle"] == pytest.approx(0.0)
    assert record["memory"]["system_ram_used_peak_mb"] == 5321
