"""glibc's malloc in a process that decodes for many callers: how many arenas, and freed memory kept for reuse.

Both change the allocator of the whole process, so genrt applies them in the processes it owns (`genrt serve`, the
engine processes of EnginePool) and never on import; an application that decodes many prompts in its own process
may call them once at start (benchmarks.versus and benchmarks.engine_load do). Elsewhere than glibc (macOS,
Windows, musl) they change nothing and return False.

- `bound_malloc_arenas`: glibc gives threads that allocate at once arenas of their own, up to 8 per core, and keeps
  what they grew. Under the mixed load (benchmarks.serve_load) the server's threads (the engine's lanes, the event
  loop, the faces and scoring workers) took its resident memory from 345 to 453 MB in steps over 150 s; with 2
  arenas it stayed at 301-303 MB, at the same throughput.
- `retain_freed_memory`: a poem cache grows by a block of positions every 16 steps, and each growth allocates new,
  larger buffers (MBs at 32 rows). glibc serves an allocation that large with fresh pages from the kernel and gives
  them back when it is freed, so every growth pays a page fault per 4 KB it touches: with 32 beam rows in a lane,
  370-390 µs per layer buffer grown, against 110-135 µs when allocations below 256 MB come from the heap and freed
  heap memory is kept (up to 1 GB) for the next. Whole calls gained less (medians of 8 alternating runs in fresh
  processes): 16 prompts without options 1.09x, 16 x beam 4 1.02x; the engine under load 1.01x. The process then
  keeps the memory it peaked at.

Each also sets its environment variable, so that the processes this one starts (uvicorn's workers, spawned
engine processes) start with it; a variable the user set already is left alone, and then nothing is changed here.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable

MALLOC_ARENAS = 2
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8     # glibc's mallopt parameter numbers (malloc.h)
HEAP_BELOW_BYTES = 256 << 20                                     # allocations smaller than this come from the heap
KEEP_FREE_BYTES = 1 << 30                                        # free heap kept before any is given back


def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None                       # glibc's mallopt is a Linux matter (Windows cannot even open CDLL(None))
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):     # not glibc (musl)
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _apply(settings: dict[str, tuple[int, int]]) -> bool:
    """settings: environment variable -> (mallopt parameter, value). -> whether this process took them all."""
    if any(os.environ.get(name) for name in settings):
        return False                      # glibc read the user's values when the process started
    for name, (_, value) in settings.items():
        os.environ[name] = str(value)
    mallopt = _mallopt()
    return mallopt is not None and all(bool(mallopt(param, value)) for param, value in settings.values())


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most `arenas` malloc arenas here and in the processes started from here (MALLOC_ARENA_MAX)."""
    return _apply({"MALLOC_ARENA_MAX": (M_ARENA_MAX, arenas)})


def retain_freed_memory() -> bool:
    """Allocations below 256 MB from the heap, and up to 1 GB of freed heap kept for reuse, here and in the processes
    started from here (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_)."""
    return _apply({"MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, HEAP_BELOW_BYTES),
                   "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, KEEP_FREE_BYTES)})
