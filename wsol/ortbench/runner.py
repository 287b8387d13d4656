"""The benchmark runner: sessions per execution provider, precision variants, timing, parity.

Imports only the standard library, numpy and onnxruntime (``onnx`` as well for the FP16/INT8 variants
on the CPU and CUDA providers), so it runs on a Jetson with the Jetson onnxruntime-gpu wheel and no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import env as envmod
from . import jetson
from .metrics import compare_outputs, latency_stats

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def ort_version(text: str) -> tuple[int, int]:
    """``"1.16.3"`` -> ``(1, 16)``; unparsable parts count as 0."""
    parts = (text.split("+")[0].split(".") + ["0", "0"])[:2]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)  # type: ignore[return-value]


class ProviderError(ValueError):
    """A requested execution provider is not available or was not applied to the session."""


@dataclass
class BenchOptions:
    """What to measure; the CLI flags of ``wsol bench onnx`` map one-to-one onto these fields."""

    model: str
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    fp16: bool = False
    int8: bool = False
    iters: int = 200
    min_time_s: float = 10.0
    max_time_s: float = 60.0
    warmup_iters: int = 10
    warmup_s: float = 2.0
    threads: int | None = None
    iobinding: bool = False
    parity_images: int = 8
    inputs: str | None = None
    out_dir: str = "bench_results"
    trt_cache_dir: str = "trt_cache"
    rebuild_engines: bool = False
    trt_workspace_gb: float = 2.0
    allow_cpu_fallback: bool = False
    jetson: str = "auto"
    idle_s: float = 0.0
    tegrastats_interval_ms: int = 100
    seed: int = 0


def resolve_providers(names: list[str], available: list[str]) -> list[tuple[str, str]]:
    """Map ``cpu/cuda/tensorrt`` to EP names and fail unless each is compiled into this onnxruntime.

    Raises:
        ProviderError: naming the provider, what is available and where GPU builds come from.
    """
    out = []
    for name in names:
        key = name.strip().lower()
        if key not in PROVIDERS:
            raise ProviderError(f"unknown provider {name!r}; choose from cpu, cuda, tensorrt")
        ep = PROVIDERS[key]
        if ep not in available:
            raise ProviderError(
                f"requested provider {key!r} ({ep}) is not available in this onnxruntime build "
                f"(available: {', '.join(available)}). Install onnxruntime-gpu on x86 GPUs, or the Jetson wheel "
                "(see benchmarks/README.md), and never together with the CPU 'onnxruntime' package"
            )
        out.append(("tensorrt" if key == "trt" else key, ep))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sidecar(model: Path, sha256: str) -> dict[str, Any]:
    """The model's ``.json`` sidecar (``{}`` when there is none), checked to describe this very file.

    Raises:
        ValueError: naming the sidecar: not a JSON object, or its ``sha256`` is another file's (a stale sidecar
            beside a newer graph).
    """
    path = model.with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON sidecar: {err}") from None
    if not isinstance(sidecar, dict):
        raise ValueError(f"{path}: the sidecar must be a JSON object, got {type(sidecar).__name__}")
    recorded = sidecar.get("sha256")
    if recorded is not None and recorded != sha256:
        raise ValueError(
            f"{path}: describes another graph (sha256 {str(recorded)[:12]}..., {model.name} is {sha256[:12]}...); "
            "re-export, or delete the stale sidecar"
        )
    return sidecar


def _exported_size(model: Path, sidecar: dict[str, Any], session: Any) -> list[int]:
    """``[height, width]`` a dynamic-size graph was exported for: the sidecar's, else the graph's own metadata."""
    preprocessing = sidecar.get("preprocessing")
    size = preprocessing.get("size") if isinstance(preprocessing, dict) else None
    if size is None:
        text = session.get_modelmeta().custom_metadata_map.get("wsol.preprocessing")
        try:
            size = json.loads(text).get("size") if text else None
        except (ValueError, AttributeError):
            size = None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"{model}: a dynamic-size input, and neither its sidecar nor its metadata gives a size")
    return size


class Runner:
    """Runs every (provider, precision, batch) configuration of :class:`BenchOptions`.

    Args:
        opts: the options.
        log: receives one plain progress line per step (``print`` by default).
    """

    def __init__(self, opts: BenchOptions, log: Callable[[str], None] = print) -> None:
        import onnxruntime as ort

        self.ort, self.opts, self.log = ort, opts, log
        self.model = Path(opts.model)
        if not self.model.is_file():
            raise FileNotFoundError(f"model not found: {self.model}")
        if not opts.batch_sizes or min(opts.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be positive integers, got {opts.batch_sizes}")
        self.providers = resolve_providers(opts.providers, list(ort.get_available_providers()))
        self.sha = _sha256(self.model)
        self.sidecar = read_sidecar(self.model, self.sha)
        self.on_jetson = jetson.is_jetson() if opts.jetson == "auto" else opts.jetson == "on"
        self.out_dir = Path(opts.out_dir)
        self.threads = opts.threads or os.cpu_count() or 1
        self.env = envmod.environment(self.on_jetson)
        self._variants: dict[str, Path] = {"fp32": self.model}
        reference = self._session(self.model, "CPUExecutionProvider", {}, cpu_fallback=True)
        inp = reference.get_inputs()[0]
        self.input_name, self.output_names = inp.name, [o.name for o in reference.get_outputs()]
        dims = list(inp.shape)
        if len(dims) == 4 and isinstance(dims[1], int) and not all(isinstance(d, int) for d in dims[2:]):
            # A --dynamic-size graph: timed at the size it was exported for (sidecar, else the graph's metadata).
            dims = [dims[0], dims[1], *_exported_size(self.model, self.sidecar, reference)]
        if not all(isinstance(d, int) for d in dims[1:]):
            raise ValueError(f"input {inp.name} has dynamic non-batch dims {dims}; export with a fixed size")
        if isinstance(dims[0], int) and set(opts.batch_sizes) != {dims[0]}:
            raise ValueError(f"the model has a fixed batch of {dims[0]}; it cannot run batch sizes {opts.batch_sizes}")
        self.sample_shape = tuple(dims[1:])
        self.pool = self._input_pool()
        self.reference = self._run_chunks(reference, self.pool, 8)

    # ------------------------------------------------------------------------------- inputs, sessions
    def _input_pool(self) -> np.ndarray:
        """Parity/timing images: ``--inputs`` (npz with ``images``) or seeded N(0, 1) (normalised-like)."""
        b_max = max(self.opts.batch_sizes)
        count = max(b * math.ceil(self.opts.parity_images / b) for b in self.opts.batch_sizes)
        count = max(count, b_max)
        if self.opts.inputs:
            with np.load(self.opts.inputs) as data:
                images = np.asarray(data["images"], dtype=np.float32)
            if images.shape[1:] != self.sample_shape:
                raise ValueError(f"--inputs images have shape {images.shape[1:]}, the model wants {self.sample_shape}")
            reps = math.ceil(count / len(images))
            return np.ascontiguousarray(np.concatenate([images] * reps)[:count])
        rng = np.random.default_rng(self.opts.seed)
        return rng.standard_normal((count, *self.sample_shape), dtype=np.float32)

    def _session(self, path: Path, ep: str, ep_options: dict[str, Any], cpu_fallback: bool) -> Any:
        ort = self.ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if ep == "CPUExecutionProvider":
            so.intra_op_num_threads = self.threads
        if not cpu_fallback:
            # Otherwise single nodes may silently land on the CPU provider.
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        chain: list[Any] = [(ep, ep_options)]
        if ep == "TensorrtExecutionProvider":
            chain.append(("CUDAExecutionProvider", {"device_id": 0}))
        if ep != "CPUExecutionProvider":
            chain.append("CPUExecutionProvider")
        return ort.InferenceSession(str(path), sess_options=so, providers=chain)

    def _run_chunks(self, session: Any, images: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
        outs = [session.run(None, {self.input_name: images[i : i + chunk]}) for i in range(0, len(images), chunk)]
        names = self.output_names
        merged = {n: np.concatenate([o[j] for o in outs]) for j, n in enumerate(names)}
        if "logits" not in merged:  # a foreign model: treat the first output as logits
            merged = {"logits": merged[names[0]]}
        return {k: v for k, v in merged.items() if k in ("logits", "cams")}

    def variant(self, precision: str, provider: str) -> Path:
        """The model file a (precision, provider) pair runs; TensorRT runs FP16 from the FP32 graph."""
        if precision == "fp32" or (precision == "fp16" and provider == "tensorrt"):
            return self.model
        if precision not in self._variants:
            from .variants import make_fp16, make_int8

            target = self.out_dir / "models" / f"{self.model.stem}.{precision}.onnx"
            target.parent.mkdir(parents=True, exist_ok=True)
            self.log(f"[ortbench] building the {precision} variant -> {target}")
            if precision == "fp16":
                make_fp16(self.model, target)
            else:
                make_int8(self.model, target, self.pool, self.input_name)
            self._variants[precision] = target
        return self._variants[precision]

    # ------------------------------------------------------------------------------------ measuring
    def _trt_options(self, precision: str, batch: int, cache: Path) -> dict[str, Any]:
        """TensorRT EP options; options newer than the installed onnxruntime are left out, because an
        unknown option makes onnxruntime drop the whole provider (and fall back to CUDA)."""
        version = ort_version(self.ort.__version__)
        options: dict[str, Any] = {
            "device_id": 0,
            "trt_fp16_enable": precision == "fp16",
            "trt_int8_enable": precision == "int8",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_max_workspace_size": int(self.opts.trt_workspace_gb * 2**30),
        }
        if version >= (1, 15):
            # One static profile per batch size: without explicit shapes the TensorRT EP rebuilds the
            # engine whenever a new shape leaves the current range (microsoft/onnxruntime#3904).
            shape = f"{self.input_name}:" + "x".join(str(d) for d in (batch, *self.sample_shape))
            options.update(trt_profile_min_shapes=shape, trt_profile_opt_shapes=shape, trt_profile_max_shapes=shape)
            options["trt_builder_optimization_level"] = 3
        if version >= (1, 17):
            # Kernel timings are model-independent: one cache at the root serves every engine.
            options["trt_timing_cache_path"] = str(Path(self.opts.trt_cache_dir))
        return options

    def _start(self, path: Path, provider: str, ep: str, ep_options: dict[str, Any], feed: dict) -> tuple:
        """Create a session, verify its provider, run it once; returns (session, load_s, first_run_s)."""
        fallback = self.opts.allow_cpu_fallback or ep == "CPUExecutionProvider"
        t0 = time.perf_counter()
        try:
            session = self._session(path, ep, ep_options, cpu_fallback=fallback)
        except Exception as err:
            if ep == "CPUExecutionProvider":
                raise
            hint = "" if fallback else " (if nodes were refused for the CPU, try --allow-cpu-fallback)"
            raise ProviderError(f"creating a {provider} session failed: {err}{hint}") from err
        load_s = time.perf_counter() - t0
        applied = list(session.get_providers())
        if applied[0] != ep:
            # onnxruntime-gpu falls back to CPU silently when the CUDA/TensorRT libraries do not load.
            raise ProviderError(
                f"requested provider {provider!r} ({ep}) was not applied: the session runs on {applied}. "
                "onnxruntime's log above says why: usually CUDA/cuDNN/TensorRT libraries that do not load, or an "
                "EP option this onnxruntime version does not know"
            )
        t0 = time.perf_counter()
        session.run(None, feed)
        return session, load_s, time.perf_counter() - t0

    def _timed_loop(self, fn: Callable[[], Any]) -> tuple[list[float], float, str]:
        opts = self.opts
        warm_end = time.perf_counter() + opts.warmup_s
        done = 0
        while done < opts.warmup_iters or time.perf_counter() < warm_end:
            fn()
            done += 1
        times: list[float] = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if len(times) >= opts.iters and t1 - start >= opts.min_time_s:
                return times, t1 - start, "iterations"
            if t1 - start >= opts.max_time_s:
                return times, t1 - start, "max_time"

    def _call(self, session: Any, x: np.ndarray, provider: str) -> tuple[Callable[[], Any], str]:
        if not self.opts.iobinding:
            feed = {self.input_name: x}
            return (lambda: session.run(None, feed)), "end-to-end"
        device = "cpu" if provider == "cpu" else "cuda"
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, self.ort.OrtValue.ortvalue_from_numpy(x, device, 0))
        for name in self.output_names:
            binding.bind_output(name, device)

        def run() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run, "compute" if device != "cpu" else "end-to-end"

    def measure(self, provider: str, ep: str, precision: str, batch: int, idle_mw: float | None = None) -> dict:
        """Measure one configuration and return its record (see benchmarks/README.md for the fields)."""
        path = self.variant(precision, provider)
        x = np.ascontiguousarray(self.pool[:batch])
        feed = {self.input_name: x}
        ep_options: dict[str, Any] = {"device_id": 0} if provider == "cuda" else {}
        cold = cache_state = None
        scoped = envmod.reset_peak_rss()
        if provider == "tensorrt":
            cache = Path(self.opts.trt_cache_dir) / self._cache_key(precision, batch)
            cache.mkdir(parents=True, exist_ok=True)
            ep_options = self._trt_options(precision, batch, cache)
            if self.opts.rebuild_engines:
                for stale in [*cache.glob("*.engine"), *cache.glob("*.profile")]:
                    stale.unlink()
            if not any(cache.glob("*.engine")):
                session, load_s, first_s = self._start(path, provider, ep, ep_options, feed)
                cold = {"load_s": load_s, "first_run_s": first_s, "engine_cache": "miss"}
                del session
            # The timed session should load what the cold one built; "miss" means caching did not work.
            cache_state = "hit" if any(cache.glob("*.engine")) else "miss"
        gpu_memory = envmod.GpuMemorySampler() if provider != "cpu" and not self.on_jetson else None
        if gpu_memory is not None:
            gpu_memory.__enter__()
        try:
            session, load_s, first_s = self._start(path, provider, ep, ep_options, feed)
            fn, latency_kind = self._call(session, x, provider)
            sampler = jetson.TegrastatsSampler(self.opts.tegrastats_interval_ms) if self.on_jetson else None
            if sampler is not None:
                sampler.__enter__()
            try:
                times, timed_s, stopped_by = self._timed_loop(fn)
            finally:
                if sampler is not None:
                    sampler.__exit__(None, None, None)
        finally:
            if gpu_memory is not None:
                gpu_memory.__exit__(None, None, None)
        images = batch * math.ceil(self.opts.parity_images / batch)
        got = self._run_chunks(session, self.pool[:images], batch)
        parity = compare_outputs({k: v[:images] for k, v in self.reference.items()}, got, precision)
        parity.update(reference="CPUExecutionProvider fp32", images=images)
        record: dict[str, Any] = {
            "model": self.model.stem,
            "model_sha256": self.sha,
            "cams": cams.get("classes") if isinstance(cams := self.sidecar.get("cams"), dict) else None,
            "opset": self.sidecar.get("opset"),
            "provider": provider,
            "precision": precision,
            "batch": batch,
            "input_shape": [batch, *self.sample_shape],
            "model_file": path.name,
            "iobinding": self.opts.iobinding,
            "latency_kind": latency_kind,
            "threads": self.threads if provider == "cpu" else None,
            "providers_applied": list(session.get_providers()),
            "ep_options": ep_options,
            "cold_start": cold,
            "start": {
                "load_s": load_s,
                "first_run_s": first_s,
                "engine_cache": cache_state,
            },
            **latency_stats(times, batch),
            "timed_s": timed_s,
            "stopped_by": stopped_by,
            "parity": parity,
            "memory": {
                "peak_rss_mb": round(envmod.peak_rss_mb(), 1),
                "peak_rss_scope": "configuration" if scoped else "process",
                "gpu_peak_mb": gpu_memory.peak_mb if gpu_memory is not None else None,
                # Jetson: CPU and GPU share RAM; tegrastats' system-wide figure is the one that counts.
                "system_ram_used_peak_mb": max((s["ram_used_mb"] or 0 for s in sampler.samples), default=None)
                if sampler is not None
                else None,
            },
            "power": None,
            "env": self.env,
        }
        if precision == "int8" and path != self.model:
            record["calibration"] = self.calibration_note
        if sampler is not None:
            record["power"] = jetson.summarize_power(
                sampler.samples, batch * len(times), timed_s, idle_mw, self.opts.tegrastats_interval_ms
            )
            if sampler.error:
                record["power"]["error"] = sampler.error
        return record

    def _cache_key(self, precision: str, batch: int) -> str:
        trt = (self.env.get("tensorrt") or "unknown").replace("/", "_")
        return f"{self.model.stem}-{self.sha[:12]}-{precision}-b{batch}-ort{self.ort.__version__}-trt{trt}"

    @property
    def calibration_note(self) -> str:
        if self.opts.inputs:
            return f"--inputs ({len(self.pool)} images)"
        return f"random N(0,1) inputs ({len(self.pool)}): timing only, accuracy not representative"

    def run(self, on_record: Callable[[dict], None] | None = None) -> list[dict]:
        """Measure every configuration in order provider -> precision -> batch size."""
        precisions = ["fp32"] + ["fp16"] * self.opts.fp16 + ["int8"] * self.opts.int8
        idle = None
        if self.on_jetson and self.opts.idle_s > 0:
            idle = jetson.measure_idle_power(self.opts.idle_s, self.opts.tegrastats_interval_ms)
        records = []
        for provider, ep in self.providers:
            for precision in precisions:
                for batch in self.opts.batch_sizes:
                    self.log(f"[ortbench] {provider} {precision} batch {batch} ...")
                    record = self.measure(provider, ep, precision, batch, idle)
                    lat = record["latency_ms"]
                    self.log(
                        f"[ortbench] {provider} {precision} batch {batch}: p50 {lat['p50']:.2f} ms, "
                        f"p99 {lat['p99']:.2f} ms, {record['throughput_ips']:.1f} images/s, "
                        f"parity {'pass' if record['parity']['pass'] else 'FAIL'}"
                    )
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
        return records
