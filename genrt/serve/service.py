"""What the routes share: the loaded models and the engine (or why they are not there), the bounded work queues
for faces and scoring, and the helpers that bound a request's time and notice a client that left."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from genrt.serve.config import ServeConfig
from genrt.serve.errors import ApiError

log = logging.getLogger("genrt.serve")
T = TypeVar("T")


@dataclass
class Models:
    poems: Any              # genrt.PoemGenerator (scoring, the tokenizer)
    faces: Any              # genrt.FaceGenerator
    engine: Any             # PoemEngine, or EngineProcess (the same in a child process): submit / stats / close


def load_models(config: ServeConfig) -> Models:
    """Both generators through genrt's own loaders (model checks, provider choice, telemetry off), and the
    engine over the poem generator."""
    from genrt.faces.generator import FaceGenerator
    from genrt.poems.engine import PoemEngine
    from genrt.poems.generator import PoemGenerator
    poems = PoemGenerator.load(config.model_dir, provider=config.provider, threads=config.threads,
                               precision=config.precision)
    # faces share the cores with the poem decoder's loop: their idle threads must not spin on them (measured:
    # spinning faces threads cost the mixed load a sixth of its poem throughput)
    faces = FaceGenerator.load(config.faces_model_dir, provider=config.provider, threads=config.threads,
                               precision=config.precision, spin=False)
    if config.engine_process:           # lanes in processes of their own: no lock shared with the event loop
        from genrt.poems.engine_process import EnginePool
        cpu = poems.provider == "cpu"       # on CPU one process per lane, each one lane (one core) of the model
        engine = EnginePool.start(dict(model_dir=config.model_dir, provider=poems.provider,
                                       threads=1 if cpu else config.threads, precision=config.precision),
                                  processes=poems.model.lanes if cpu else 1, max_rows=config.max_rows,
                                  max_queued=config.max_queued, timeout=config.request_timeout)
    else:
        engine = PoemEngine(poems, max_rows=config.max_rows, max_queued=config.max_queued,
                            timeout=config.request_timeout)
    return Models(poems, faces, engine)


class Busy(Exception):
    """A work queue is full."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class WorkQueue:
    """At most `workers` calls run at once (in threads); at most `max_waiting` wait; more raise Busy. A call holds
    its place until its thread returns, even when its caller stopped waiting (a client that left, a request past
    its timeout): a thread cannot be stopped, so freeing the place earlier would let calls pile up beyond the bound."""

    def __init__(self, workers: int, max_waiting: int):
        self.workers, self.max_waiting = workers, max_waiting
        self.waiting = self.running = 0
        self._limit: asyncio.Semaphore | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.workers)
        if self.waiting + self.running >= self.workers + self.max_waiting:
            raise Busy()
        self.waiting += 1
        try:
            await self._limit.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        work = asyncio.ensure_future(run_in_threadpool(fn, *args))
        work.add_done_callback(self._finished)
        return await asyncio.shield(work)       # a cancelled caller leaves; the call runs on and keeps its place

    def _finished(self, work: asyncio.Future) -> None:
        self.running -= 1
        self._limit.release()
        if not work.cancelled():
            work.exception()                    # retrieved: a call whose caller left must not log as unretrieved


class Service:
    def __init__(self, config: ServeConfig, models: Models | Callable[[], Models] | None = None):
        self.config = config
        self.models: Models | None = models if isinstance(models, Models) else None
        self._loader = None if isinstance(models, Models) else models or (lambda: load_models(config))
        self.load_error: str | None = None
        self.closing = False
        self._loading: asyncio.Future | None = None
        self.faces_work = WorkQueue(1, config.max_queued)
        self.score_work = WorkQueue(1, config.max_queued)

    async def start(self) -> None:
        """Load the models in a thread, so the server answers (/healthz: 503) while they load."""
        if self._loader is not None:
            self._loading = asyncio.ensure_future(self._load(self._loader))

    async def _load(self, loader: Callable[[], Models]) -> None:
        try:
            self.models = await run_in_threadpool(self._load_unless_closing, loader)
            if self.models is not None:
                log.info("models loaded: ready")
        except Exception as e:                        # shown by /healthz and every model endpoint
            self.load_error = " ".join(str(e).split()) or type(e).__name__
            log.error("cannot load the models: %s", self.load_error)

    def _load_unless_closing(self, loader: Callable[[], Models]) -> Models | None:
        """The models, or None when the server began to stop while they loaded: their engine (its threads or
        processes) is closed here, in the loading thread, since nothing will serve it."""
        models = loader()
        if self.closing:
            models.engine.close(False)
            return None
        return models

    async def stop(self) -> None:
        """Stop accepting, finish what is in flight (the engine drains), stop the engine's thread. A load still
        under way is waited for (a thread cannot be stopped), and what it loaded is closed."""
        self.closing = True
        if self._loading is not None:
            await asyncio.gather(self._loading, return_exceptions=True)
        if self.models is not None:
            await run_in_threadpool(self.models.engine.close, True)

    @property
    def ready(self) -> bool:
        return self.models is not None and not self.closing

    def ready_models(self) -> Models:
        if self.closing:
            raise ApiError(503, "the service is shutting down")
        if self.models is None:
            reason = f"the models failed to load: {self.load_error}" if self.load_error else "the models are loading"
            raise ApiError(503, reason, headers={"Retry-After": str(self.config.retry_after)})
        return self.models

    def engine_stats(self) -> dict | None:
        return self.models.engine.stats() if self.models is not None else None

    def queue_full(self, what: str) -> ApiError:
        return ApiError(429, f"{what}: the queue is full, try again shortly",
                        headers={"Retry-After": str(self.config.retry_after)})

    def timed_out(self) -> ApiError:
        return ApiError(503, f"the request took longer than {self.config.request_timeout:g} s", type="timeout_error")

    async def bounded(self, request: Request, work: Awaitable[T], on_disconnect: Callable[[], None]) -> T:
        """The result of `work`, within the request timeout (else 503), or ClientGone (after `on_disconnect`)
        as soon as the client disconnects."""
        try:
            with anyio.fail_after(self.config.request_timeout):
                return await until_done(request, work, on_disconnect)
        except TimeoutError:
            on_disconnect()
            raise self.timed_out() from None


async def until_done(request: Request, work: Awaitable[T], on_disconnect: Callable[[], None]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        on_disconnect()
        raise ClientGone()
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the server's next message is the end)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
