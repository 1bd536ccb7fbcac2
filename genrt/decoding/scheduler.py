"""The one decoding loop: a scheduler that steps any mix of requests in one decoder call per step.

Continuous batching, as llama.cpp's server and vLLM do for decoder-only models: each step gathers the active rows
of every request into one `model.step`; requests waiting for room are encoded together and join between steps
(their rows start at their own position 0 beside rows hundreds of steps along); a request that finishes, is
cancelled or fails leaves at once, and its rows are freed for the next. A request is a `Search` (what to feed its
rows next) over the rows it holds; forced ids (<sos>, a continued first line) are fed one per step before its
search starts. The model speaks `start / step / reorder / join` (genrt.poems.model.PoemModel).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from genrt.decoding.processors import logsumexp
from genrt.decoding.search import Hypothesis, Search, Update


class StepModel(Protocol):
    def start(self, sources: Sequence[Sequence[int]], copies: int | Sequence[int] = 1): ...
    def step(self, tokens: np.ndarray, cache): ...
    def reorder(self, cache, rows: np.ndarray): ...
    def join(self, first, second): ...


def step_log_norm(cache, logits: np.ndarray) -> np.ndarray:
    """(N,) log-sum-exp of the logits (N, V) a step just returned with `cache`: computed by the decoder graph when
    it has a log_norm output (a vectorised LogSoftmax, cheaper than a numpy pass over the vocabulary), else here."""
    given = getattr(cache, "log_norm", None)
    return given if given is not None else logsumexp(logits)[:, 0]


class Cancelled(Exception):
    """The request was cancelled (by its caller or its deadline) before it finished."""


@dataclass(eq=False)
class Request:
    """One prompt's decoding: its source ids, its rows' forced prefix (R, P) (<sos> + forced ids, the same in
    every row), the search over those rows, and what the scheduler reports back. `on_step(request)` runs on the
    scheduler's thread after every step in which the request's search advanced."""
    source: list[int]
    prefix: np.ndarray
    search: Search
    on_step: Callable[["Request"], None] | None = None
    context: Any = None                               # the client's own data (e.g. the prompt), untouched here
    fed: int = 0                                      # prefix columns already fed to the decoder
    next_tokens: np.ndarray | None = None             # (R,) what its rows take at the next step
    result: list[Hypothesis] | None = None
    error: BaseException | None = None
    steps: int = 0                                    # decoder calls it took part in
    _cancel: threading.Event = field(default_factory=threading.Event)
    _cancel_reason: BaseException | None = None       # what a cancelled request fails with (set by any thread)
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def rows(self) -> int:
        return len(self.prefix)

    def cancel(self, reason: BaseException | None = None) -> None:
        """Ask the scheduler to drop the request at its next step (its rows are freed then). Only the scheduler's
        thread sets `error` (a request that finished meanwhile keeps its result)."""
        if self._cancel_reason is None and reason is not None:
            self._cancel_reason = reason
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, result: list[Hypothesis] | None = None, error: BaseException | None = None) -> None:
        if self._done.is_set():                       # finished once: its outcome stands
            return
        self.result = result
        if error is not None and self.error is None:
            self.error = error
        self._done.set()


class Scheduler:
    """Steps requests together. Not thread-safe by itself: one thread calls `step` (genrt.poems.engine runs one
    on its own thread; PoemGenerator runs one inside a call); `submit` and `Request.cancel` may come from any
    thread only through a lock the caller holds, or through the engine."""

    def __init__(self, model: StepModel, max_rows: int = 256):
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.model, self.max_rows = model, max_rows
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []
        self.cache = None
        self.tokens_generated = 0                     # ids chosen by searches (forced ids not counted)
        self.model_error: Exception | None = None      # the model's failure in the last step, if it failed

    @property
    def active_rows(self) -> int:
        return sum(r.rows for r in self.active)

    @property
    def idle(self) -> bool:
        return not self.active and not self.waiting

    def submit(self, request: Request) -> Request:
        if request.rows > self.max_rows:
            raise ValueError(f"the request needs {request.rows} rows; this scheduler holds at most {self.max_rows}")
        self.waiting.append(request)
        return request

    def run(self) -> None:
        """Step until every submitted request has finished; a model failure is raised (after it failed every
        request it reached), so that a caller decoding in several lanes stops the others."""
        while not self.idle:
            self.step()
            if self.model_error is not None:
                error, self.model_error = self.model_error, None
                raise error

    def step(self) -> list[Request]:
        """Admit what fits, run one decoder call over every active row, advance every request. -> the requests
        that finished (result or error) in this step. When the model fails (an encoder or decoder call, a cache
        move), every request admitted or waiting fails with its error, and the scheduler starts again empty."""
        ended: list[Request] = []
        self.model_error = None
        try:
            self._drop_cancelled(ended)
            self._admit()
            if self.active:
                self._advance(ended)
        except Exception as e:
            failed = [r for r in self.active + list(self.waiting) if not r.done]
            self.active, self.cache = [], None
            self.waiting.clear()
            for r in failed:
                r._finish(error=e)
            ended += failed
            self.model_error = e
        return ended

    def _advance(self, ended: list[Request]) -> None:
        """One decoder call over the active rows and every search's update; requests that finish are appended to
        `ended` as they do (so that a failure later in the step loses none of them)."""
        tokens = np.concatenate([r.next_tokens for r in self.active])[:, None]           # (N, 1)
        logits, self.cache = self.model.step(tokens, self.cache)                          # (N, V)
        log_norm = step_log_norm(self.cache, logits)                                     # (N,)
        updates = self._update_searches(logits, log_norm)                               # id(request) -> Update
        sources = np.arange(len(tokens))            # (N,) the old row each row continues (beams move)
        layout, offset = [], 0                      # (request, its first row, rows); request None: rows that leave
        moved = False                               # a beam moved or a request left: the cache is reordered
        for r in self.active:
            rows, at = r.rows, offset
            offset += rows
            r.steps += 1
            if r.fed < r.prefix.shape[1]:                 # still feeding forced ids: the logits are not read
                r.next_tokens = r.prefix[:, r.fed]
                r.fed += 1
                layout.append((r, at, rows))
                continue
            update = updates[id(r)]
            if isinstance(update, BaseException):         # one request's failure must not stop the others
                r._finish(error=update)
            else:
                self.tokens_generated += rows
                if r.on_step is not None:
                    r.on_step(r)
                if update.done:
                    r._finish(r.search.result())
                else:
                    r.next_tokens = update.tokens
                    if update.source_rows is not None:
                        sources[at:offset] = at + update.source_rows
                        moved = True
                    layout.append((r, at, rows))
                    continue
            ended.append(r)
            layout.append((None, at, rows))
            moved = True
        if moved:                                   # else every request keeps its rows, in the same order
            self._move_rows(sources, fill_gaps(layout))

    def _move_rows(self, sources: np.ndarray, layout: list[tuple]) -> None:
        """One reorder of the cache for every beam move and every leaver: the requests that stay, in `layout`'s
        order, continue old rows sources[first:first + rows] (skipped when nothing moved or left)."""
        self.active = [r for r, _, _ in layout]
        if not self.active:
            self.cache = None
            return
        rows = np.concatenate([sources[at:at + n] for _, at, n in layout])               # (N kept,)
        if len(rows) != len(sources) or (rows != np.arange(len(rows))).any():
            self.cache = self.model.reorder(self.cache, rows)

    def _update_searches(self, logits: np.ndarray, log_norm: np.ndarray) -> dict[int, Update | BaseException]:
        """Each decoding request's update for this step (its exception if it failed). Consecutive requests whose
        searches share a `group_key` (greedy or best-first beam ones with the same stateless processors, at the
        same length) step as one: one numpy call per stage for all their rows instead of one per request.
        Sampling requests, each with processors of its own, pick together when their `sampler_key`s match."""
        out: dict[int, Update | BaseException] = {}
        sampled: dict[tuple, list[tuple[Request, slice]]] = {}
        for group, rows in self._search_groups():
            search = group[0].search
            key = getattr(search, "sampler_key", None) if len(group) == 1 else None
            if key is not None:
                sampled.setdefault((type(search), key), []).append((group[0], rows))
                continue
            self._update_group(group, rows, logits, log_norm, out)
        for (kind, _), members in sampled.items():
            if len(members) == 1:
                self._update_group([members[0][0]], members[0][1], logits, log_norm, out)
                continue
            try:
                updates = kind.update_sampled([r.search for r, _ in members], [rows for _, rows in members], logits,
                                              log_norm)
                out.update(zip((id(r) for r, _ in members), updates))
            except Exception:                             # find the failing request: each then steps alone
                for r, rows in members:
                    self._update_group([r], rows, logits, log_norm, out)
        return out

    @staticmethod
    def _update_group(group: list[Request], rows: slice, logits: np.ndarray, log_norm: np.ndarray,
                      out: dict[int, Update | BaseException]) -> None:
        search = group[0].search
        try:
            updates = (type(search).update_group([g.search for g in group], logits[rows], log_norm[rows])
                       if len(group) > 1 else [search.update(logits[rows], log_norm[rows])])
            out.update(zip(map(id, group), updates))
        except Exception as e:                            # a group shares its processors: they fail together
            out.update((id(g), e) for g in group)

    def _search_groups(self) -> list[tuple[list[Request], slice]]:
        """The decoding requests (forced ids all fed) in runs of consecutive ones whose searches share a
        `group_key` (alone when they have none), each with the slice of its rows in the step's logits."""
        runs: list[list] = []                             # [requests, first row, end row]
        key, offset = None, 0
        for r in self.active:
            rows, at = r.rows, offset
            offset += rows
            if r.fed < r.prefix.shape[1]:                 # feeding: not updated, and it splits a run
                key = None
                continue
            previous, key = key, getattr(r.search, "group_key", None)
            if key is not None and key == previous:
                runs[-1][0].append(r)
                runs[-1][2] = offset
            else:
                runs.append([[r], at, offset])
        return [(group, slice(a, b)) for group, a, b in runs]

    def _drop_cancelled(self, ended: list[Request]) -> None:
        """Finish the cancelled requests (appended to `ended`) and free their rows."""
        for r in [r for r in self.waiting if r.cancelled]:
            self.waiting.remove(r)
            r._finish(error=r._cancel_reason or Cancelled("cancelled"))
            ended.append(r)
        # read each flag once: another thread may cancel meanwhile (that request goes at the next step)
        cancelled = [r.cancelled for r in self.active]
        if any(cancelled):
            keep, stay, offset = [], [], 0
            for r, gone in zip(self.active, cancelled):
                if gone:                                # finished before the cache moves: a failure there loses none
                    r._finish(error=r._cancel_reason or Cancelled("cancelled"))
                    ended.append(r)
                else:
                    keep.append(np.arange(offset, offset + r.rows))
                    stay.append(r)
                offset += r.rows
            self.active = stay
            self.cache = self.model.reorder(self.cache, np.concatenate(keep)) if stay else None

    def _admit(self) -> None:
        """Encode the waiting requests that fit (in arrival order) in one call and join them to the batch."""
        if not self.waiting:
            return
        room, admitted = self.max_rows - self.active_rows, []
        while self.waiting and self.waiting[0].rows <= room:
            r = self.waiting.popleft()
            room -= r.rows
            admitted.append(r)
        if not admitted:
            return
        try:
            fresh = self.model.start([r.source for r in admitted], [r.rows for r in admitted])
            self.cache = fresh if self.cache is None else self.model.join(self.cache, fresh)
        except Exception:
            self.waiting.extendleft(reversed(admitted))   # not admitted after all: they wait (and fail) as before
            raise
        for r in admitted:
            r.next_tokens, r.fed = r.prefix[:, 0], 1
        self.active += admitted


def fill_gaps(layout: list[tuple]) -> list[tuple]:
    """The requests that stay, in the order their rows take after a step: [(request, first row, rows)] in row order,
    request None for rows that leave -> the staying entries. A gap takes the last staying request when that one
    has exactly the gap's rows (its rows move, the rows between stay where they are); otherwise the rows after the
    gap move down. Rows are independent of their neighbours, so the order changes no result, only what is copied."""
    blocks, out = list(layout), []
    while blocks:
        block = blocks.pop(0)
        if block[0] is not None:
            out.append(block)
            continue
        while blocks and blocks[-1][0] is None:           # gaps at the end close by themselves
            blocks.pop()
        if blocks and blocks[-1][2] == block[2]:
            out.append(blocks.pop())
    return out


def decode(model: StepModel, sources: Sequence[Sequence[int]], searches: Sequence[Search],
           max_rows: int = 256) -> list[list[Hypothesis]]:
    """Decode one request per (source, search) together, to the end: each search's hypotheses (Search.result).
    The searches' own prefixes (<sos> + forced ids) start their rows."""
    requests = [Request(list(src), search.prefix, search) for src, search in zip(sources, searches)]
    scheduler = Scheduler(model, max(max_rows, max(r.rows for r in requests)))
    for r in requests:
        scheduler.submit(r)
    scheduler.run()
    for r in requests:
        if r.error is not None:
            raise r.error
    return [r.result for r in requests]


def decode_greedy(model: StepModel, source: Sequence[int], sos_id: int, max_new: int, eos_id: int,
                  processors: Sequence = ()) -> Hypothesis:
    """Greedy decoding of one source from <sos>: what export checks and benchmarks compare across models."""
    from genrt.decoding.processors import pick_greedy
    from genrt.decoding.search import SampleSearch
    return decode(model, [source], [SampleSearch(np.array([[sos_id]]), max_new, eos_id, processors,
                                                 pick_greedy)])[0][0]


def decode_beams(model: StepModel, source: Sequence[int], sos_id: int, num_beams: int, max_new: int, eos_id: int,
                 processors: Sequence = (), num_return: int = 1) -> list[Hypothesis]:
    """Best-first beam search of one source from <sos> (length penalty 1)."""
    from genrt.decoding.search import BeamSearch
    return decode(model, [source], [BeamSearch(np.full((num_beams, 1), sos_id), max_new, eos_id, processors,
                                               num_return=num_return)])[0]
