"""onnxruntime sessions built from the captioner config: threads, providers, graph optimisation cache.

The optimised graph is saved next to the bundle (`.ort-cache/`), keyed by the source file's hash, the
onnxruntime version, the optimisation level and the machine, and loaded on the next start, so a daemon
restart skips the graph rewrites. The cache holds the graph optimised at most to "extended": level
"all" adds layout rewrites that bake this CPU's SIMD width into the graph (NCHWc blocks of 8 floats on
AVX2, 16 on AVX-512), and a cache written by one x86 machine computed garbage on another. Those
rewrites are cheap, and are redone each time the cached graph is loaded.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged.inference.protocol import ModelUnavailable
from edged.logs import get_logger

LEVELS = ("none", "basic", "extended", "all")
PORTABLE_LEVEL = "extended"  # the highest level whose graph does not depend on the CPU it was built on


def resolve_threads(threads: int) -> int:
    """0 means every core but one (audio and ingest keep a core), at least one."""
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 2) - 1)


def resolve_providers(configured: Sequence[str]) -> list[str]:
    """The configured providers this onnxruntime build has, in order; a missing one is logged by name."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in configured if p in available]
    for p in configured:
        if p not in available:
            get_logger(component="captioner").warning(
                "provider_missing",
                provider=p,
                available=available,
                hint="this onnxruntime build lacks it (Jetson: install NVIDIA's onnxruntime-gpu wheel)",
            )
    if not chosen:
        chosen = ["CPUExecutionProvider"]
    return chosen


def session_options(threads: int, level: str) -> Any:
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(f"graph optimisation level {level!r} is not one of {', '.join(LEVELS)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = resolve_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.log_severity_level = 3
    return so


def _cache_path(model: Path, sha256: str, level: str, cache_dir: Path) -> Path:
    import onnxruntime as ort

    tag = f"{sha256[:16]}-ort{ort.__version__}-{level}-{platform.machine()}"
    return cache_dir / f"{model.stem}.{tag}.onnx"


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def _cached_level(level: str) -> str:
    return level if LEVELS.index(level) <= LEVELS.index(PORTABLE_LEVEL) else PORTABLE_LEVEL


def _write_cache(model: Path, cached: Path, threads: int, providers: list[str], level: str) -> bool:
    """Optimise `model` to `level` and save it as `cached` (a session built only for that)."""
    import onnxruntime as ort

    so = session_options(threads, level)
    so.optimized_model_filepath = str(cached)
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", cached.name + ".data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        ort.InferenceSession(str(model), sess_options=so, providers=providers)
    except Exception:  # onnxruntime raises its own types; the caller loads the bundle's file and says why
        return False
    return cached.is_file()


def open_session(
    model: Path, sha256: str, *, threads: int, providers: Sequence[str], level: str, cache_dir: Path | None
) -> Any:
    """An InferenceSession for `model`, through the optimised-graph cache when one is usable."""
    import onnxruntime as ort

    chosen = resolve_providers(providers)
    so = session_options(threads, level)
    path = model
    if cache_dir is not None and level != "none" and chosen == ["CPUExecutionProvider"]:
        stored = _cached_level(level)
        cached = _cache_path(model, sha256, stored, cache_dir)
        if cached.is_file() or (_writable(cache_dir) and _write_cache(model, cached, threads, chosen, stored)):
            path = cached
            if stored == level:  # nothing left to apply; otherwise this CPU's layout rewrites run now
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types
        if path != model:  # a stale or broken cache entry: rebuild from the bundle's file
            get_logger(component="captioner").warning(
                "optimized_cache_unusable", file=str(path), error=str(exc)
            )
            path.unlink(missing_ok=True)
            return open_session(
                model, sha256, threads=threads, providers=providers, level=level, cache_dir=None
            )
        raise ModelUnavailable(
            f"onnxruntime cannot load {model}: {exc}",
            f"check the bundle with `edged models verify {model.parent}`",
        ) from None
