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
