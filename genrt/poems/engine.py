"""PoemEngine: many callers, one decoder loop per lane. Requests come from any thread; each lane's thread runs a
scheduler (genrt.decoding.scheduler), so requests that arrive at different times share decoder steps. A CPU model
has one lane per thread (genrt.decoding.lanes): a request goes to the lane with the fewest rows, and the lanes'
decoder calls run at once.

    engine = PoemEngine(PoemGenerator.load(), max_rows=64, max_queued=256, timeout=60)
    handle = engine.submit("春江花月夜", num_beams=4)
    print(handle.result()[0].text)                  # or: for piece in handle.pieces(): ...
    engine.close()

Bounded: at most `max_rows` decoder rows are active in each lane (prompts x beams / returned sequences; more
requests wait), at most `max_queued` requests wait (EngineFull beyond that), a request older than `timeout`
seconds is dropped with TimeoutError, and a cancelled one frees its rows at the next step. `close()` (or `with`)
stops the lane threads; an engine never closed keeps them (daemon threads) until the process exits. Options are
validated in the caller's thread, before anything is queued. A request decodes to the same poems as it would alone
(for models that declare batch invariance: PoemModel.batch_invariant).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, AsyncIterator, Callable, Iterator, Protocol, Sequence

from genrt.decoding.lanes import lanes_of
from genrt.decoding.scheduler import Cancelled, Request, Scheduler
from genrt.poems.generator import BATCH_ROWS, Poem, PoemGenerator, text_list

MAX_QUEUED = 256
log = logging.getLogger("genrt.poems.engine")


def check_bounds(timeout: float | None = None, **counts: Any) -> None:
    """ValueError naming the first bound that is not a positive integer (`counts`: name -> value) or a timeout that
    is neither None nor a positive number of seconds (True is neither)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def check_wait(timeout: Any) -> None:
    """ValueError unless a wait's `timeout` is None or a number of seconds >= 0."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


def prompt_list(prompts: Any) -> list[str]:
    """submit_many's prompts as a list (any iterable of strings, read once: generator.text_list); ValueError for one
    string (submit takes that) and for what text_list refuses."""
    if isinstance(prompts, str):
        raise ValueError("submit_many takes a list of prompts, not one string")
    return text_list("prompts", prompts)


class EngineFull(RuntimeError):
    """The engine's queue is full: try again later."""


class EngineClosed(RuntimeError):
    """The engine no longer accepts requests."""


class EngineFailed(RuntimeError):
    """The engine stopped without being closed (its process died): the request did not finish. An EnginePool
    starts another process in its place."""


class PiecesReader:
    """What every handle's readers share: pieces and the end arrive from the engine's side (`_changed` notified,
    `_listeners` woken), and are read here from threads (pieces) or from asyncio (aresult, apieces,
    apiece_batches). A subclass sets the four fields and says what the outcome is."""
    _changed: threading.Condition
    _listeners: list[tuple[Any, Any]]          # (event loop, asyncio.Event) async waiters; (Watcher, handle)
    _end_listeners: list[tuple[Any, Any]]      # async waiters for the end only
    _pieces: list[str]
    _ended: bool                               # the last piece is in: the request finished

    def _outcome(self) -> list[Poem]:
        """The poems; raises the request's error."""
        raise NotImplementedError

    def _to_wake(self) -> list[tuple[Any, Any]]:
        """Under `_changed`, after a change: the listeners it concerns."""
        return self._listeners + self._end_listeners if self._ended else list(self._listeners)

    def _reading(self) -> None:
        """Someone reads pieces (PoemHandle then settles them every step)."""

    def pieces(self) -> Iterator[str]:
        """Pieces of the first poem as they become certain (as PoemGenerator.stream), then the end; raises the
        request's error."""
        sent = 0
        self._reading()
        while True:
            with self._changed:
                self._changed.wait_for(lambda: sent < len(self._pieces) or self._ended)
                fresh, ended = self._pieces[sent:], self._ended
            yield from fresh
            sent += len(fresh)
            if ended and sent == len(self._pieces):
                break
        self._outcome()                                        # raises the request's error, if any

    async def aresult(self) -> list[Poem]:
        await self._until(lambda: self._ended)
        return self._outcome()

    async def apieces(self, deadline: float | None = None) -> AsyncIterator[str]:
        """pieces(), without blocking the event loop; TimeoutError once time.monotonic() passes `deadline`."""
        async for batch in self.apiece_batches(deadline):
            for piece in batch:
                yield piece

    async def apiece_batches(self, deadline: float | None = None, interval: float = 0.0
                             ) -> AsyncIterator[list[str]]:
        """The pieces as lists: every piece that became certain since the last list (a server sends each list
        in one write), at most one list per `interval` seconds unless the request ends sooner. TimeoutError once
        time.monotonic() passes `deadline`."""
        sent, last = 0, None
        self._reading()
        while True:
            if interval > 0 and last is not None:          # pace the lists; the end cuts the pause short
                try:
                    pause = last + interval
                    await self._until(lambda: self._ended, pause if deadline is None else min(pause, deadline),
                                      end_only=True)
                except TimeoutError:
                    pass
            await self._until(lambda: sent < len(self._pieces) or self._ended, deadline)
            with self._changed:
                fresh, ended = self._pieces[sent:], self._ended
            if fresh:
                last = time.monotonic()
                yield fresh
            sent += len(fresh)
            if ended and sent == len(self._pieces):
                break
        self._outcome()

    async def _until(self, ready: Callable[[], bool], deadline: float | None = None, end_only: bool = False
                     ) -> None:
        """Wait without blocking the event loop: the engine's side sets an asyncio event on every change, or
        with `end_only` at the end only (`deadline`: time.monotonic(), TimeoutError past it)."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        listener, waiting = (loop, event), self._end_listeners if end_only else self._listeners
        with self._changed:
            waiting.append(listener)
        try:
            if ready():
                return
            at = None if deadline is None else loop.time() + (deadline - time.monotonic())
            async with asyncio.timeout_at(at):                 # one timer for the whole wait, no task per wait
                while not ready():
                    await event.wait()
                    event.clear()
        finally:
            with self._changed:
                waiting.remove(listener)


class PoemHandle(PiecesReader):
    """One submitted prompt: wait for its poems, read its pieces as they become certain, or cancel it."""

    def __init__(self, engine: "PoemEngine", request: Request):
        self._engine, self.request = engine, request
        self._changed = threading.Condition()
        self._listeners: list[tuple[Any, Any]] = []
        self._end_listeners: list[tuple[Any, Any]] = []
        self._pieces: list[str] = []
        self._shown = 0                                        # settled ids already turned into pieces
        self._ended = False
        self._streaming = False                                # someone reads pieces: settle them every step
        forced = request.context[1]
        if forced:
            self._pieces.append(engine.generator.tokenizer.decode(forced))

    @property
    def done(self) -> bool:
        return self.request.done

    def watch(self, watcher: "Watcher", pieces: bool = False) -> None:
        """Have `watcher.changed(handles)` called on the engine's thread at the end of every step that changed
        this handle (with every handle it watches that changed in that step), and once more if it has already
        ended; `pieces`: settle pieces every step (as a reader of pieces() would)."""
        with self._changed:
            self._streaming = self._streaming or pieces
            self._listeners.append((watcher, self))
            ended = self._ended
        if ended:
            watcher.changed([self])

    async def accepted(self) -> None:
        """Returns once the engine holds the request (at once here: submit() queued it or raised)."""

    def cancel(self) -> None:
        """Drop the request; its rows are freed at the engine's next step. result() then raises Cancelled."""
        self.request.cancel()
        self._engine._wake_up()

    def result(self, timeout: float | None = None) -> list[Poem]:
        """The poems, in generate's order (GenerationOptions.num_return_sequences); raises the request's error
        (ValueError, Cancelled, TimeoutError), or TimeoutError when `timeout` seconds pass first (the request keeps
        running)."""
        check_wait(timeout)
        if not self.request.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        return self._outcome()

    def _outcome(self) -> list[Poem]:
        return self._engine.generator.poems_of(self.request)

    def _reading(self) -> None:
        self._streaming = True

    def _update(self) -> None:
        """On the engine thread, after a step: new settled characters become a piece; the end adds the rest."""
        r = self.request
        if not r.done and not self._streaming:
            return                                             # nobody reads pieces yet: the end settles them all
        if r.done:
            ids = r.result[0].tokens if r.result else []
        else:
            ids = r.search.settled()
        with self._changed:
            if len(ids) > self._shown:
                self._pieces.append(self._engine.generator.tokenizer.decode(ids[self._shown:]))
                self._shown = len(ids)
            self._ended = r.done
            self._changed.notify_all()
            listeners = self._to_wake()
        if listeners:
            self._engine._wake_listeners(listeners)


class Watcher(Protocol):
    def changed(self, handles: list[PoemHandle]) -> None: ...


def wake(listeners: list[tuple[Any, Any]]) -> None:
    """Set each async waiter's event on its own loop (one call_soon_threadsafe per loop) and tell each watcher
    which of its handles changed (one call per watcher)."""
    by_target: dict[Any, list] = {}
    for target, item in listeners:
        by_target.setdefault(target, []).append(item)
    for target, items in by_target.items():
        if not isinstance(target, asyncio.AbstractEventLoop):
            try:
                target.changed(items)
            except Exception:                                  # a watcher's bug must not stop the engine's lane
                log.exception("a watcher of the poem engine failed")
            continue
        try:
            target.call_soon_threadsafe(_set_all, items)
        except RuntimeError:                                   # that loop has closed: nobody waits any more
            pass


def _set_all(events: list[asyncio.Event]) -> None:
    for event in events:
        event.set()


class _Lane:
    """One scheduler and its thread (genrt.decoding.lanes); `rows` counts the rows of its unfinished requests."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.incoming: deque[PoemHandle] = deque()
        self.rows = 0
        self.thread: threading.Thread | None = None

    @property
    def queued(self) -> int:
        return len(self.incoming) + len(self.scheduler.waiting)


class PoemEngine:
    def __init__(self, generator: PoemGenerator, max_rows: int = BATCH_ROWS, max_queued: int = MAX_QUEUED,
                 timeout: float | None = None):
        if not isinstance(generator, PoemGenerator):
            raise ValueError(f"PoemEngine takes a PoemGenerator (PoemGenerator.load()), got {type(generator).__name__}")
        check_bounds(max_rows=max_rows, max_queued=max_queued, timeout=timeout)
        self.generator, self.max_queued, self.timeout = generator, max_queued, timeout
        self._lanes = [_Lane(Scheduler(generator.model, max_rows)) for _ in range(lanes_of(generator.model))]
        self._lock = threading.Condition()
        self._handles: dict[int, PoemHandle] = {}              # id(request) -> handle, while unfinished
        self._deadlines: dict[int, float] = {}
        self._closed = self._drain = False
        self._stepping = threading.local()                     # .wakes: async waiters to wake after this step
        self.steps = self.requests_finished = 0
        for i, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(target=self._loop, args=(lane,), name=f"genrt-poem-engine-{i}",
                                           daemon=True)
            lane.thread.start()

    @property
    def max_rows(self) -> int:
        """Rows one decoder call steps together (in each lane)."""
        return self._lanes[0].scheduler.max_rows

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def submit(self, prompt: str, stream: bool = False, **options: Any) -> PoemHandle:
        """Queue one prompt with its own options (PoemGenerator.generate's keywords); `stream`: its pieces will be
        read (settled from the first step on; reading pieces() turns this on anyway). ValueError for bad input,
        EngineFull when `max_queued` requests already wait, EngineClosed after close()."""
        return self.submit_many([prompt], stream, **options)[0]

    def submit_many(self, prompts: Sequence[str], stream: bool = False, **options: Any) -> list[PoemHandle]:
        """Queue several prompts with the same options at once, as generate(list) decodes them: they are dealt to
        the lanes together and join the same step, and sampling draws from streams seeded as for one call. All or
        none: EngineFull when they do not all fit in the queue; ValueError and EngineClosed as submit."""
        prompts = prompt_list(prompts)
        if not prompts:
            return []
        opts = self.generator.options(**options)
        requests = self.generator.requests(prompts, opts)
        if requests[0].rows > self.max_rows:
            raise ValueError(f"the request needs {requests[0].rows} decoder rows; this engine holds at most "
                             f"{self.max_rows}")
        handles = []
        for request in requests:
            handle = PoemHandle(self, request)
            handle._streaming = stream
            request.on_step = lambda _, handle=handle: handle._update()
            handles.append(handle)
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down")
            waiting = sum(lane.queued for lane in self._lanes)
            if waiting + len(handles) > self.max_queued:
                raise EngineFull(f"{waiting} requests are already waiting; {len(handles)} more would pass the "
                                 f"limit of {self.max_queued}" if len(handles) > 1 else
                                 f"{self.max_queued} requests are already waiting")
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            for handle in handles:
                lane = min(self._lanes, key=lambda lane: lane.rows)   # the lane with the fewest rows to step
                lane.incoming.append(handle)
                lane.rows += handle.request.rows
                if deadline is not None:
                    self._deadlines[id(handle.request)] = deadline
            self._lock.notify_all()
        return handles

    def generate(self, prompts: Sequence[str], **options: Any) -> list[list[Poem]]:
        """Submit every prompt at once (submit_many), then wait for all: one list of poems per prompt."""
        return [h.result() for h in self.submit_many(prompts, **options)]

    def stats(self) -> dict:
        with self._lock:
            schedulers = [lane.scheduler for lane in self._lanes]
            return {"queued": sum(lane.queued for lane in self._lanes),
                    "active_requests": sum(len(s.active) for s in schedulers),
                    "active_rows": sum(s.active_rows for s in schedulers),
                    "tokens_generated": sum(s.tokens_generated for s in schedulers), "steps": self.steps,
                    "requests_finished": self.requests_finished}

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; with `drain` finish those in flight, else cancel them; then stop the threads."""
        with self._lock:
            self._closed, self._drain = True, drain
            if not drain:
                for handle in [h for lane in self._lanes for h in lane.incoming] + list(self._handles.values()):
                    handle.request.cancel(Cancelled("the engine was closed"))
            self._lock.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for lane in self._lanes:
            lane.thread.join(None if end is None else max(0.0, end - time.monotonic()))

    def __enter__(self) -> "PoemEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wake_listeners(self, listeners: list[tuple[Any, Any]]) -> None:
        """Wake async waiters: during a lane's step, once at its end (one call into each event loop per step,
        not one per request and piece); elsewhere at once."""
        wakes = getattr(self._stepping, "wakes", None)
        if wakes is not None:
            wakes.extend(listeners)
        else:
            wake(listeners)

    def _wake_up(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def _loop(self, lane: _Lane) -> None:
        scheduler = lane.scheduler
        while True:
            with self._lock:
                while not self._closed and not lane.incoming and scheduler.idle:
                    self._lock.wait()
                if self._closed and not lane.incoming and scheduler.idle:
                    return
                while lane.incoming:
                    handle = lane.incoming.popleft()
                    self._handles[id(handle.request)] = handle
                    scheduler.submit(handle.request)
            self._expire()
            self._stepping.wakes = []
            ended = scheduler.step()                  # a model failure fails the step's requests, not the lane
            with self._lock:
                self.steps += 1
                for r in ended:
                    handle = self._handles.pop(id(r), None)
                    self._deadlines.pop(id(r), None)
                    self.requests_finished += 1
                    lane.rows -= r.rows
                    if handle is not None:
                        handle._update()
            wakes, self._stepping.wakes = self._stepping.wakes, None
            wake(wakes)

    def _expire(self) -> None:
        if not self._deadlines:
            return
        now = time.monotonic()
        with self._lock:
            late = [key for key, deadline in self._deadlines.items() if deadline <= now]
            for key in late:
                handle = self._handles.get(key)
                if handle is not None:              # else still in a lane's incoming queue: expired once it is in
                    handle.request.cancel(TimeoutError(f"the request took longer than {self.timeout} s"))
                    del self._deadlines[key]
