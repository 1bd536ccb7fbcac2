"""Lanes: several schedulers stepping at once over one model, one per core.

On a CPU, a decoder step of a few dozen rows is mostly small kernels that onnxruntime's intra-op threads share
out poorly. Two 8-row calls made at once from two threads, each call on one thread, took 0.68-0.92 ms where one
16-row call on two threads took 1.10-1.30 ms (int8 decoder alone, 16-48 cached positions, 2-core EPYC). So a CPU
poem model runs its decoder one thread per call (PoemModel.lanes) and decodes in that many schedulers, each on a
thread of its own. onnxruntime releases the GIL during a call, so one lane's Python work (searches, processors,
cache moves) also overlaps the other lane's decoder call.

A row's numbers do not depend on the rows beside it (PoemModel.batch_invariant), so the lane a request runs in
changes nothing in its result.
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence, TypeVar

from genrt.decoding.scheduler import Request, Scheduler, StepModel

T = TypeVar("T")
R = TypeVar("R")


def lanes_of(model: object) -> int:
    """How many schedulers should step `model` at once: its `lanes` (1 for models that do not say)."""
    return max(1, int(getattr(model, "lanes", 1)))


def split_by_rows(requests: Sequence[Request], lanes: int) -> list[list[Request]]:
    """Deal the requests to at most `lanes` lanes, each in turn to the lane holding the fewest rows so far (the
    first such lane on ties), so lanes carry about the same rows; each lane keeps the requests' order."""
    parts: list[list[Request]] = [[] for _ in range(max(1, min(lanes, len(requests))))]
    rows = [0] * len(parts)
    for r in requests:
        lane = rows.index(min(rows))
        parts[lane].append(r)
        rows[lane] += r.rows
    return parts


def in_lanes(work: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """work(part) for every part at once, one thread each (the first in the calling thread) -> the results in
    order. Every thread is joined before the first error, if any, is raised."""
    results: list = [None] * len(parts)
    errors: list[BaseException | None] = [None] * len(parts)

    def run(i: int) -> None:
        try:
            results[i] = work(parts[i])
        except BaseException as e:        # handed to the calling thread below
            errors[i] = e
    threads = [threading.Thread(target=run, args=(i,), name=f"genrt-lane-{i}", daemon=True)
               for i in range(1, len(parts))]
    for t in threads:
        t.start()
    if parts:
        run(0)
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


def run_requests(model: StepModel, requests: Sequence[Request], max_rows: int) -> None:
    """Decode every request to its end: in `lanes_of(model)` schedulers at once, the rows dealt evenly. When one
    lane fails (the model raised, or Ctrl-C reached the calling thread) every request is cancelled, so the other
    lanes stop at their next step instead of decoding to the end; then the error is raised."""
    def run(part: list[Request]) -> None:
        scheduler = Scheduler(model, max(max_rows, max(r.rows for r in part)))
        for r in part:
            scheduler.submit(r)
        try:
            scheduler.run()
        except BaseException:
            for r in requests:
                r.cancel()
            raise
    in_lanes(run, split_by_rows(requests, lanes_of(model)))
