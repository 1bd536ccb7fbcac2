"""Repeated timing with warm-up: median and p90 in milliseconds."""
from __future__ import annotations

import resource
import time
from typing import Callable

import numpy as np


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90)),
            "repeats": repeats}


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
                     ) -> dict[str, dict[str, float]]:
    """time_ms for several functions whose ratio is the point (beam vs greedy, cache vs recompute): their runs
    alternate (one of each per round, the order reversed every other round), so a machine that slows down for a
    minute slows every one of them alike. -> {name: time_ms-style stats}."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"median_ms": float(np.median(s)), "p90_ms": float(np.percentile(s, 90)), "repeats": repeats}
            for name, s in samples.items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# CPU features that decide which onnxruntime / CTranslate2 kernels run (int8 dot products, bf16, AMX)
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                "amx_int8", "amx_bf16")


def cpu_info() -> dict:
    """{'model': 'AMD EPYC ...', 'flags': [the KERNEL_FLAGS present]} from /proc/cpuinfo (empty off Linux)."""
    import platform
    from pathlib import Path
    path = Path("/proc/cpuinfo")
    lines = path.read_text().splitlines() if path.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return {"model": model, "flags": [f for f in KERNEL_FLAGS if f in flags]}
