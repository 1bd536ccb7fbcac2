"""A small stand-in for genrt.poems.engine.PoemEngine with the same API, whose requests finish only when a test
says so: queue-full, timeout, disconnect and drain tests need an engine they can hold still."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

from genrt.decoding.scheduler import Cancelled
from genrt.poems.engine import EngineClosed, EngineFull
from genrt.poems.generator import Poem


class FakeHandle:
    def __init__(self, engine: "FakeEngine", prompt: str, options: dict):
        self.engine, self.prompt, self.options = engine, prompt, options
        self.pieces_ready = ["春", "江", "花", "月", "夜", "。"]
        self.error: BaseException | None = None
        self.cancelled = False
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()
        self.engine._finished(self)

    def cancel(self) -> None:
        if not self.done:
            self.cancelled = True
            self.finish(Cancelled("cancelled"))

    def _poems(self) -> list[Poem]:
        if self.error is not None:
            raise self.error
        return [Poem(self.prompt, "".join(self.pieces_ready), -1.5, True)]

    async def accepted(self) -> None:
        """As the engine's: submit() already queued it."""

    def result(self, timeout: float | None = None) -> list[Poem]:
        if not self._done.wait(timeout):
            raise TimeoutError()
        return self._poems()

    def pieces(self):
        self._done.wait()
        yield from self.pieces_ready
        self._poems()

    async def aresult(self) -> list[Poem]:
        while not self.done:
            await asyncio.sleep(0.005)
        return self._poems()

    async def apiece_batches(self, deadline: float | None = None, interval: float = 0.0):
        """As the engine's: its pieces in two writes; TimeoutError past `deadline` (time.monotonic())."""
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError()
            await asyncio.sleep(0.005)
        if self.error is None:
            yield self.pieces_ready[:2]
            yield self.pieces_ready[2:]
        self._poems()


class FakeEngine:
    """auto=True: each request finishes at once; else a test calls release() (or the handles' finish())."""

    def __init__(self, max_queued: int = 4, auto: bool = True, delay: float = 0.0):
        self.max_queued, self.auto, self.delay = max_queued, auto, delay
        self.handles: list[FakeHandle] = []
        self.waiting: list[FakeHandle] = []
        self.closed_with: bool | None = None
        self.finished = 0

    def submit(self, prompt: str, stream: bool = False, **options) -> FakeHandle:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("a prompt must be a non-empty string")
        if self.closed_with is not None:
            raise EngineClosed("the engine is shutting down")
        if len(self.waiting) >= self.max_queued:
            raise EngineFull(f"{self.max_queued} requests are already waiting")
        handle = FakeHandle(self, prompt, options)
        self.handles.append(handle)
        self.waiting.append(handle)
        if self.auto:
            threading.Timer(self.delay, handle.finish).start() if self.delay else handle.finish()
        return handle

    def _finished(self, handle: FakeHandle) -> None:
        if handle in self.waiting:
            self.waiting.remove(handle)
        self.finished += 1

    def release(self) -> None:
        for handle in list(self.waiting):
            handle.finish()

    def stats(self) -> dict:
        return {"queued": len(self.waiting), "active_requests": 0, "active_rows": 0, "tokens_generated": 0,
                "steps": 0, "requests_finished": self.finished}

    def close(self, drain: bool = True) -> None:
        self.closed_with = drain
        deadline = time.monotonic() + 5
        while drain and self.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        for handle in list(self.waiting):
            handle.finish(Cancelled("the engine was closed"))


# ---------------------------------------------------------------- fixtures (imported by the tests/test_serve_*.py)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_generators(tiny_poems_dir, tiny_faces_model):
    """(PoemGenerator, FaceGenerator) of the tiny test models, loaded once."""
    from genrt.faces.generator import FaceGenerator
    from genrt.poems.generator import PoemGenerator
    return PoemGenerator.load(tiny_poems_dir, threads=1), FaceGenerator.load(tiny_faces_model, threads=1)


def app_client(config=None, models=None, **config_fields):
    """A TestClient over create_app; use it as a context manager (startup and shutdown run)."""
    from fastapi.testclient import TestClient
    from genrt.serve.app import create_app
    from genrt.serve.config import ServeConfig
    return TestClient(create_app(config or ServeConfig(**config_fields), models), raise_server_exceptions=False)


@pytest.fixture
def real_models(tiny_generators):
    """The tiny generators behind a real PoemEngine (closed after the test)."""
    from genrt.poems.engine import PoemEngine
    from genrt.serve.service import Models
    poems, faces = tiny_generators
    engine = PoemEngine(poems, max_rows=16, max_queued=8, timeout=30)
    yield Models(poems, faces, engine)
    engine.close(drain=False)


@pytest.fixture
def fake_models(tiny_generators):
    from genrt.serve.service import Models
    poems, faces = tiny_generators
    return Models(poems, faces, FakeEngine())


@contextlib.contextmanager
def uvicorn_server(app):
    """The app served by uvicorn on a free loopback port in a thread, until the block ends. -> its base URL."""
    import uvicorn                      # the serve extra, imported only by tests that run a server
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    for _ in range(250):
        if server.started:
            break
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
