"""The poem engine in processes of its own, for a caller whose own Python is busy (an HTTP server's event loop).

A PoemEngine's searches and processors are Python. In the caller's process they take turns on one interpreter
lock with the caller's work, and with each other's lanes: measured under `genrt serve` on two cores, the service
answered 67-72 % of the tokens the engine decodes when called directly. `EnginePool` runs one engine process per
lane instead (on CPU, one per core, each engine one lane): no two lanes and no HTTP work share a lock. The caller
keeps PoemEngine's API for services:

    pool = EnginePool.start(dict(model_dir=None, provider="cpu"), processes=2, max_rows=64, max_queued=256,
                            timeout=60)
    handle = pool.submit("春江花月夜", stream=True, seed=1)
    await handle.accepted()                  # EngineFull / EngineClosed / ValueError, as PoemEngine.submit raises
    async for pieces in handle.apiece_batches(deadline): ...
    poems = await handle.aresult()           # or handle.result(), handle.cancel()
    pool.close()

One pipe per process, each way. Parent -> child: ("submit", [id, ...], [prompt, ...], options, stream) (prompts
submitted together: PoemEngine.submit_many), ("cancel", id), ("close", drain). Child -> parent: ("ready", lanes)
or ("failed", message) at start; ("accepted", [id, ...], error | None) per submit; once per engine step that
changed a request, ("step", stats, [(id, new pieces, ended, poems | None, error | None), ...]); while its
counters move, ("stats", stats) every STATS_INTERVAL_S (a request that streams nothing reports only at its end). A
request decodes in a child exactly as in the caller's process (rows are independent).

A child that dies (killed, out of memory) fails its requests with EngineFailed, naming its exit code; the pool
logs it and starts another process in its place (again after RESTART_DELAYS_S while starting fails), and its
stats say how many processes are alive and how many were restarted. Children are started with multiprocessing's
"spawn": as for any spawned process, the caller's main module must be importable and must start them under
`if __name__ == "__main__":` (a script or `python -m`, not code piped to `python -`).
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
import queue
import signal
import threading
from typing import Any, Callable, Sequence

from genrt.allocator import retain_freed_memory
from genrt.poems.engine import (BATCH_ROWS, MAX_QUEUED, EngineClosed, EngineFailed, PiecesReader, PoemEngine,
                                PoemHandle, check_bounds, check_wait, prompt_list, wake)
from genrt.poems.generator import Poem, PoemGenerator

START_TIMEOUT_S = 300                    # loading the model in the child
STATS_INTERVAL_S = 0.5                   # a busy child's counters reach the parent at least this often
RESTART_DELAYS_S = (1, 2, 5, 10, 30)     # between tries to replace a dead child (the last one repeats)
COUNTERS = ("tokens_generated", "steps", "requests_finished")    # stats that only grow (the others are gauges)
SPAWN_HINT = ("a script that starts engine processes must do so under `if __name__ == \"__main__\":` "
              "(multiprocessing's spawn imports the main module in each child)")
log = logging.getLogger("genrt.poems.engine_process")


class RemoteHandle(PiecesReader):
    """One request in a child's engine: PoemHandle's waiting, streaming and cancelling (PiecesReader), fed by the
    parent's reader thread."""

    def __init__(self, engine: "EngineProcess", ident: int):
        self._engine, self._id = engine, ident
        self._changed = threading.Condition()
        self._listeners: list[tuple[Any, Any]] = []
        self._end_listeners: list[tuple[Any, Any]] = []
        self._pieces: list[str] = []
        self._ended = self._accepted = False
        self._poems: list[Poem] | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._ended

    def cancel(self) -> None:
        if not self._ended:
            try:
                self._engine._send(("cancel", self._id))
            except (EngineClosed, EngineFailed):       # the process has gone: the reader refuses the request
                pass

    async def accepted(self) -> None:
        """Returns once the child's engine holds the request; raises what its submit raised."""
        await self._until(lambda: self._accepted or self._ended)
        if self._ended and self._error is not None and not self._accepted:
            raise self._error

    def result(self, timeout: float | None = None) -> list[Poem]:
        check_wait(timeout)
        with self._changed:
            if not self._changed.wait_for(lambda: self._ended, timeout):
                raise TimeoutError(f"no result within {timeout} s")
        return self._outcome()

    def _outcome(self) -> list[Poem]:
        if self._error is not None:
            raise self._error
        assert self._poems is not None
        return self._poems

    def _apply(self, pieces: list[str], ended: bool, poems: list[Poem] | None, error: BaseException | None,
               wakes: list) -> None:
        """On the reader thread: what the child reported for this request."""
        with self._changed:
            self._accepted = True
            self._pieces.extend(pieces)
            if ended:
                self._poems, self._error, self._ended = poems, error, True
            self._changed.notify_all()
            wakes.extend(self._to_wake())

    def _refuse(self, error: BaseException, wakes: list) -> None:
        with self._changed:
            if self._ended:
                return
            self._error, self._ended = error, True
            self._changed.notify_all()
            wakes.extend(self._to_wake())


class EngineProcess:
    """PoemEngine(PoemGenerator.load(**load), max_rows, max_queued, timeout) in a child process (see the module's
    docstring). Starts loading at once; wait_ready() raises RuntimeError when the child cannot load the model."""

    def __init__(self, load: dict, max_rows: int = BATCH_ROWS, max_queued: int = MAX_QUEUED,
                 timeout: float | None = None, on_exit: Callable[["EngineProcess"], None] | None = None,
                 stats_interval: float = STATS_INTERVAL_S):
        context = multiprocessing.get_context("spawn")        # no fork of a process with threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(child, load, max_rows, max_queued, timeout,
                                                                  stats_interval),
                                        name="genrt-poem-engine", daemon=True)
        self._process.start()
        child.close()
        self.lanes, self.max_rows = 0, max_rows
        self._send_lock, self._lock = threading.Lock(), threading.Lock()
        self._handles: dict[int, RemoteHandle] = {}
        self._next_id, self._closed = 0, False
        self.failure: str | None = None        # why the child stopped, when it stopped without being closed
        self._ended = False                    # the reader saw the pipe end: no request registers after that
        self._on_exit = on_exit                # called on the reader thread after such a stop (EnginePool)
        self._stats = {"queued": 0, "active_requests": 0, "active_rows": 0, "tokens_generated": 0, "steps": 0,
                       "requests_finished": 0}
        self._reader = threading.Thread(target=self._read, name="genrt-poem-engine-reader", daemon=True)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "EngineProcess":
        if not self._conn.poll(timeout):
            self._process.kill()
            raise RuntimeError(f"the poem engine process did not start within {timeout:g} s")
        try:
            message = self._conn.recv()
        except EOFError:
            self._process.join(10)
            code = self._process.exitcode
            message = ("failed", f"it exited with code {code}" + (f" ({SPAWN_HINT})" if code == 1 else ""))
        if message[0] != "ready":
            self._process.join(10)
            raise RuntimeError(f"the poem engine process failed: {message[1]}")
        self.lanes = message[1]
        self._reader.start()
        return self

    @property
    def alive(self) -> bool:
        """Started, and its process has not stopped."""
        return self._reader.is_alive() and not self._ended

    @property
    def in_flight(self) -> int:
        return len(self._handles)

    def submit(self, prompt: str, stream: bool = False, **options: Any) -> RemoteHandle:
        """Queue one prompt (PoemGenerator.generate's keywords); `stream`: pieces are sent as they settle. The
        child's refusal (ValueError, EngineFull, EngineClosed) comes from `await handle.accepted()` and from the
        result."""
        return self.submit_many([prompt], stream, **options)[0]

    def submit_many(self, prompts: Sequence[str], stream: bool = False, **options: Any) -> list[RemoteHandle]:
        """Queue several prompts with the same options in one message: the child's engine takes them together
        (PoemEngine.submit_many: one step, all or none)."""
        prompts = prompt_list(prompts)
        try:                                # what cannot cross the pipe is refused here, before anything is queued
            pickle.dumps(options)
        except Exception as e:
            raise ValueError(f"options sent to an engine process must be plain values (numbers, strings, lists): "
                             f"{e}") from None
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shutting down")
            if not self.alive:
                raise EngineFailed(self.failure or "the poem engine process has stopped")
            handles = []
            for _ in prompts:
                self._next_id += 1
                handles.append(RemoteHandle(self, self._next_id))
                self._handles[self._next_id] = handles[-1]
        if handles:
            try:
                self._send(("submit", [h._id for h in handles], prompts, options, stream))
            except BaseException:                              # not sent (child gone, options not picklable)
                with self._lock:
                    for h in handles:
                        self._handles.pop(h._id, None)
                raise
        return handles

    def stats(self) -> dict:
        """The child engine's counters as of its last step."""
        return dict(self._stats)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with `drain` the child finishes what is in flight, else cancels it; then it exits."""
        with self._lock:
            self._closed = True
        try:
            self._send(("close", drain))
        except (OSError, EngineClosed):
            pass
        if self._reader.ident is not None:
            self._reader.join(timeout)
        self._process.join(0 if self._reader.is_alive() else 10)
        if self._process.is_alive():        # never became ready, or past the timeout: the child ignores SIGTERM
            self._process.kill()
            self._process.join(10)
        if self._reader.ident is None:
            self._conn.close()
        else:
            self._reader.join(10)           # it sees the pipe close and refuses what is still unanswered

    def __enter__(self) -> "EngineProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except OSError as e:                               # the child has gone
                raise (EngineClosed if self._closed else EngineFailed)("the poem engine process has stopped") from e

    def _read(self) -> None:
        """The reader thread: apply the child's reports, wake async waiters once per event loop per report."""
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            wakes: list = []
            if message[0] == "accepted":
                _, idents, error = message
                for ident in idents:
                    handle = self._handles.get(ident)
                    if handle is not None and error is not None:
                        del self._handles[ident]
                        handle._refuse(error, wakes)
                    elif handle is not None:
                        handle._apply([], False, None, None, wakes)
            elif message[0] == "stats":
                self._stats = later_stats(self._stats, message[1])
            elif message[0] == "step":
                _, stats, updates = message
                self._stats = later_stats(self._stats, stats)
                for ident, pieces, ended, poems, error in updates:
                    handle = self._handles.get(ident)
                    if handle is not None:
                        if ended:
                            del self._handles[ident]
                        handle._apply(pieces, ended, poems, error, wakes)
            wake(wakes)
        with self._lock:                                       # submit_many registers under this lock
            self._ended = True
            unexpected = not self._closed
            unanswered = list(self._handles.values())       # the child ended (or died) with these unanswered
            self._handles.clear()
        if unexpected:                                         # not closed: the child died
            self._process.join(10)
            self.failure = f"the poem engine process stopped unexpectedly (exit code {self._process.exitcode})"
        wakes = []
        for handle in unanswered:
            handle._refuse(EngineFailed(self.failure) if unexpected else
                           EngineClosed("the poem engine process has stopped"), wakes)
        wake(wakes)
        with self._send_lock:                                  # no send is under way on the descriptor closed here
            self._conn.close()
        if unexpected and self._on_exit is not None:
            self._on_exit(self)


def later_stats(before: dict, after: dict) -> dict:
    """A child's newer stats: its counters never fall (a stats message read before a step's may arrive after it)."""
    return {**after, **{k: max(before.get(k, 0), after[k]) for k in COUNTERS if k in after}}


class EnginePool:
    """Engine processes behind one submit: a request goes to the live process with the fewest requests in flight.
    `max_queued` is shared out among them. Same API as PoemEngine for services (submit, stats, close, lanes,
    max_rows), handles as RemoteHandle. A process that dies is replaced (see the module's docstring); `load`
    and the bounds are what a replacement starts with (None: no replacement)."""

    def __init__(self, engines: list[EngineProcess], load: dict | None = None, max_queued: int = MAX_QUEUED,
                 timeout: float | None = None, stats_interval: float = STATS_INTERVAL_S):
        self.engines = engines
        self.lanes = sum(e.lanes for e in engines)
        self.max_rows = engines[0].max_rows
        self.restarts = 0
        self._load, self._share, self._timeout, self._stats_interval = load, max_queued, timeout, stats_interval
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._retired: dict[str, int] = dict.fromkeys(COUNTERS, 0)   # counters of the processes that died
        self._gone: set[EngineProcess] = set()                        # the processes already retired
        for engine in engines:
            engine._on_exit = self._exited
        for engine in engines:                 # one that died before it was watched
            if engine.failure is not None:
                self._exited(engine)

    @classmethod
    def start(cls, load: dict, processes: int, max_rows: int = BATCH_ROWS, max_queued: int = MAX_QUEUED,
              timeout: float | None = None, stats_interval: float = STATS_INTERVAL_S) -> "EnginePool":
        """`processes` engine processes loading `load` (PoemGenerator.load's keywords) at once; a busy one
        reports its counters every `stats_interval` seconds."""
        if not isinstance(load, dict):
            raise ValueError(f"load must be a dict of PoemGenerator.load's keywords, got {type(load).__name__}")
        check_bounds(processes=processes, max_rows=max_rows, max_queued=max_queued, timeout=timeout)
        if isinstance(stats_interval, bool) or not isinstance(stats_interval, (int, float)) or not stats_interval > 0:
            raise ValueError(f"stats_interval must be a positive number of seconds, got {stats_interval!r}")
        share = -(-max_queued // processes)                    # each process's part of the queue, rounded up
        engines: list[EngineProcess] = []
        try:
            for _ in range(processes):                         # each starts loading at once
                engines.append(EngineProcess(load, max_rows, share, timeout, stats_interval=stats_interval))
            for engine in engines:
                engine.wait_ready()
        except BaseException:
            for engine in engines:
                engine.close(drain=False, timeout=10)
            raise
        return cls(engines, load, share, timeout, stats_interval)

    @property
    def alive(self) -> bool:
        return all(e.alive for e in self.engines)

    def submit(self, prompt: str, stream: bool = False, **options: Any) -> RemoteHandle:
        return min(self._live(), key=lambda e: e.in_flight).submit(prompt, stream=stream, **options)

    def _live(self) -> list[EngineProcess]:
        """The processes that take requests; EngineFailed when every one has died (and is being replaced)."""
        engines = list(self.engines)
        live = [e for e in engines if e.alive]
        if live or self._closed.is_set():
            return live or engines                         # closed: each refuses with EngineClosed
        failure = next((e.failure for e in engines if e.failure), "the poem engine processes have stopped")
        raise EngineFailed(f"{failure}; {'another is' if len(engines) == 1 else 'others are'} starting")

    def submit_many(self, prompts: Sequence[str], stream: bool = False, **options: Any) -> list[RemoteHandle]:
        """The prompts dealt over the processes in contiguous shares, as even as the count allows (the processes
        with the fewest requests in flight take the larger shares), each share in one message: the handles in
        the prompts' order. A share a process refuses (in its answer) fails its own handles only; when a share
        cannot be sent at all, the shares already sent are cancelled and the error raised."""
        prompts = prompt_list(prompts)
        live = sorted(self._live(), key=lambda e: e.in_flight)
        base, extra = divmod(len(prompts), len(live))
        handles, start = [], 0
        try:
            for i, engine in enumerate(live):
                size = base + (i < extra)
                handles += engine.submit_many(prompts[start:start + size], stream, **options)
                start += size
        except BaseException:                                  # all or none: the shares already sent are cancelled
            for h in handles:
                h.cancel()
            raise
        return handles

    def generate(self, prompts: Sequence[str], **options: Any) -> list[list[Poem]]:
        """PoemGenerator.generate(list) over the processes: every prompt submitted at once (submit_many), one list
        of poems per prompt. With a seed, the same poems as one process gives (a prompt's streams depend on the
        seed and its rows only). The first error is raised and the other requests are cancelled."""
        handles = self.submit_many(prompts, **options)
        try:
            return [h.result() for h in handles]
        except BaseException:
            for h in handles:
                h.cancel()
            raise

    def stats(self) -> dict:
        """The processes' counters summed (with those of processes that died, so that counters never fall),
        gauges of the live ones, and `processes`, `processes_alive`, `restarts`."""
        with self._lock:
            engines, total = list(self.engines), dict(self._retired)
            gone = set(self._gone)
        for engine in engines:
            if engine not in gone:
                for key, value in engine.stats().items():
                    total[key] = total.get(key, 0) + value
        return {**total, "processes": len(engines), "processes_alive": sum(e.alive for e in engines),
                "restarts": self.restarts}

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting everywhere first (and stop replacing processes), then let each process finish (drain)
        or cancel, and exit."""
        self._closed.set()
        with self._lock:
            engines = list(self.engines)
        for engine in engines:
            with engine._lock:
                engine._closed = True
        for engine in engines:
            engine.close(drain, timeout)

    def _exited(self, engine: EngineProcess) -> None:
        """On a dead process's reader thread: keep its counters, log, and start its replacement."""
        with self._lock:
            if engine in self._gone:
                return
            self._gone.add(engine)
            for key in COUNTERS:
                self._retired[key] += engine.stats().get(key, 0)
        if self._closed.is_set() or self._load is None:
            return
        log.error("%s; starting another", engine.failure)
        threading.Thread(target=self._replace, args=(engine,), name="genrt-poem-engine-restart",
                         daemon=True).start()

    def _replace(self, dead: EngineProcess) -> None:
        """Start a process in the place of `dead`, trying again after each of RESTART_DELAYS_S (the last repeats)
        until one starts or the pool closes."""
        for delay in itertools.chain(RESTART_DELAYS_S, itertools.repeat(RESTART_DELAYS_S[-1])):
            engine = None
            try:
                engine = EngineProcess(self._load, self.max_rows, self._share, self._timeout, self._exited,
                                       self._stats_interval)
                engine.wait_ready()
            except Exception as e:
                if engine is not None:
                    engine.close(drain=False, timeout=10)
                log.error("cannot start a poem engine process: %s; trying again in %g s", e, delay)
                if self._closed.wait(delay):
                    return
                continue
            with self._lock:
                replaced = not self._closed.is_set()
                if replaced:
                    self.engines[self.engines.index(dead)] = engine
                    self.restarts += 1
            if not replaced:
                engine.close(drain=False, timeout=10)
                return
            log.warning("a new poem engine process took the place of the one that stopped")
            return

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the child

class _Reporter:
    """In the child: a Watcher of every handle, sending each step's changes to the parent in one message. A
    thread of its own writes to the pipe, so a lane never waits for the parent to read (a full pipe would stop
    the lanes)."""

    def __init__(self, conn, engine: PoemEngine):
        self.conn, self.engine = conn, engine
        self.lock = threading.Lock()
        self.ids: dict[int, int] = {}                         # id(handle) -> the parent's id
        self.sent: dict[int, int] = {}                        # id(handle) -> pieces sent
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write, name="genrt-poem-engine-writer", daemon=True)
        self.writer.start()

    def send(self, message: tuple | None) -> None:
        """Queue a message for the parent (None: the last one, the writer then stops)."""
        self.outbox.put(message)

    def _write(self) -> None:
        while True:
            message = self.outbox.get()
            if message is None:
                return
            try:
                self.conn.send(message)
            except OSError:                                    # the parent has gone: nothing to report to
                pass

    def changed(self, handles: list[PoemHandle]) -> None:
        """On a lane's thread at the end of a step (or on the main thread for a request that ended before it was
        watched): one message with what each handle gained; the lock keeps each piece and end reported once."""
        updates = []
        for handle in handles:
            key = id(handle)
            with self.lock:
                ident = self.ids.get(key)
                if ident is None:
                    continue
                with handle._changed:
                    pieces, ended = handle._pieces[self.sent[key]:], handle._ended
                self.sent[key] += len(pieces)
                if ended:
                    del self.ids[key], self.sent[key]
            poems = error = None
            if ended:
                try:
                    poems = self.engine.generator.poems_of(handle.request)
                except Exception as e:                          # the request's error, sent as it is
                    error = e
            updates.append((ident, pieces, ended, poems, error))
        if updates:
            self.send(("step", self.engine.stats(), updates))


def _child_main(conn, load: dict, max_rows: int, max_queued: int, timeout: float | None,
                stats_interval: float = STATS_INTERVAL_S) -> None:
    # the parent decides when to stop: Ctrl-C or SIGTERM to the process group must not cut requests short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    retain_freed_memory()                                     # genrt owns this process (genrt.allocator)
    try:
        engine = PoemEngine(PoemGenerator.load(**load), max_rows=max_rows, max_queued=max_queued, timeout=timeout)
    except Exception as e:
        conn.send(("failed", " ".join(str(e).split()) or type(e).__name__))
        return
    reporter = _Reporter(conn, engine)
    reporter.send(("ready", engine.lanes))
    stopping = threading.Event()
    threading.Thread(target=_report_stats, args=(engine, reporter, stopping, stats_interval),
                     name="genrt-poem-engine-stats", daemon=True).start()
    handles: dict[int, PoemHandle] = {}
    drain = True
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):                           # the parent has gone: stop, nobody to answer
            drain = False
            break
        if message[0] == "submit":
            _, idents, prompts, options, stream = message
            try:
                new = engine.submit_many(prompts, **options)
            except Exception as e:                             # ValueError, EngineFull, EngineClosed
                reporter.send(("accepted", idents, e))
                continue
            with reporter.lock:
                for ident, handle in zip(idents, new):
                    reporter.ids[id(handle)], reporter.sent[id(handle)] = ident, 0
            handles.update(zip(idents, new))
            reporter.send(("accepted", idents, None))
            for handle in new:
                handle.watch(reporter, pieces=stream)
            for gone in [i for i, h in handles.items() if h.done]:
                del handles[gone]
        elif message[0] == "cancel":
            handle = handles.pop(message[1], None)
            if handle is not None:
                handle.cancel()
        elif message[0] == "close":
            drain = message[1]
            break
    engine.close(drain=drain)
    stopping.set()
    reporter.send(("closed",))
    reporter.send(None)
    reporter.writer.join()
    conn.close()


def _report_stats(engine: PoemEngine, reporter: _Reporter, stopping: threading.Event, interval: float) -> None:
    """In the child: the engine's counters to the parent every `interval` seconds while they change (a request
    that streams nothing sends no step message until it ends, and /metrics must see the work in between)."""
    last = None
    while not stopping.wait(interval):
        now = engine.stats()
        if now != last:
            reporter.send(("stats", now))
            last = now
