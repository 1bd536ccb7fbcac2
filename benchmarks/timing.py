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
