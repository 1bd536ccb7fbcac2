"""genrt.serve.service: bounded work queues, a client that leaves cancels its request, and a graceful shutdown
that answers every request in flight before the engine drains."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")

from genrt.serve.app import create_app  # noqa: E402
from genrt.serve.config import ServeConfig  # noqa: E402
from genrt.serve.service import Busy, Models, WorkQueue  # noqa: E402
from tests.serve_fakes import FakeEngine, app_client, tiny_generators  # noqa: F401,E402


def test_work_queue_refuses_beyond_its_bound():
    gate = threading.Event()

    async def run():
        queue = WorkQueue(workers=1, max_waiting=1)
        first = asyncio.ensure_future(queue.run(gate.wait, 5))
        second = asyncio.ensure_future(queue.run(lambda: "second"))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await queue.run(lambda: "third")
        gate.set()
        return await first, await second
    assert asyncio.run(run()) == (True, "second")


def test_work_queue_keeps_a_place_until_the_call_ends_even_when_its_caller_left():
    """A caller cancelled (client gone, timeout) cannot stop its thread: the call keeps its place until it returns,
    so callers that leave cannot pile up calls beyond the bound."""
    gate, calls, peak = threading.Event(), [0], [0]
    lock = threading.Lock()

    def work():
        with lock:
            calls[0] += 1
            peak[0] = max(peak[0], calls[0])
        gate.wait(5)
        with lock:
            calls[0] -= 1
        return "done"

    async def run():
        queue = WorkQueue(workers=1, max_waiting=1)
        first = asyncio.ensure_future(queue.run(work))
        await asyncio.sleep(0.05)
        first.cancel()                                   # the caller leaves; its thread runs on
        await asyncio.sleep(0.05)
        assert queue.running == 1
        second = asyncio.ensure_future(queue.run(work))  # waits for the first call's place
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await queue.run(work)
        gate.set()
        result = await second
        await asyncio.sleep(0.05)
        return result, queue.running, queue.waiting
    assert asyncio.run(run()) == ("done", 0, 0)
    assert peak[0] == 1


def asgi_call(app, body: dict, leave_after: float):
    """POST /v1/poems straight through ASGI; the client disconnects `leave_after` seconds after its body."""
    sent = []
    payload = json.dumps(body).encode()
    messages = [{"type": "http.request", "body": payload, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(leave_after)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/poems", "raw_path": b"/v1/poems", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(payload)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    return sent


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_cancels_its_request(tiny_generators, stream):
    engine = FakeEngine(auto=False)
    app = create_app(ServeConfig(request_timeout=10), Models(*tiny_generators, engine))
    start = time.monotonic()
    sent = asgi_call(app, {"prompt": "春江", "stream": stream}, leave_after=0.2)
    assert time.monotonic() - start < 3
    (handle,) = engine.handles
    assert handle.cancelled and not engine.waiting
    if not stream:
        assert sent[0]["status"] == 499


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_graceful_shutdown_answers_requests_in_flight(tiny_generators):
    import httpx
    import uvicorn
    engine = FakeEngine(auto=False)
    port = free_port()
    app = create_app(ServeConfig(request_timeout=10), Models(*tiny_generators, engine))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    serving = threading.Thread(target=server.run)
    serving.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        answers = {}

        def ask(name, body):
            answers[name] = httpx.post(f"http://127.0.0.1:{port}/v1/poems", json=body, timeout=10)
        asking = [threading.Thread(target=ask, args=("plain", {"prompt": "春江"})),
                  threading.Thread(target=ask, args=("stream", {"prompt": "秋月", "stream": True}))]
        for t in asking:
            t.start()
        for _ in range(200):
            if len(engine.waiting) == 2:
                break
            time.sleep(0.02)
        server.should_exit = True                          # what uvicorn's SIGTERM handler does
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):          # no longer accepting
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert serving.is_alive() and engine.closed_with is None
        engine.release()
        for t in asking:
            t.join(10)
        serving.join(10)
    finally:
        server.should_exit = True
        serving.join(10)
    assert answers["plain"].status_code == 200 and answers["plain"].json()["poems"][0][0]["text"] == "春江花月夜。"
    assert answers["stream"].status_code == 200 and "event: done" in answers["stream"].text
    assert engine.closed_with is True and not serving.is_alive()


def test_shutdown_refuses_new_requests_while_draining(tiny_generators):
    engine = FakeEngine()
    with app_client(models=Models(*tiny_generators, engine)) as client:
        client.app.state.service.closing = True
        r = client.post("/v1/poems", json={"prompt": "春江"})
        health = client.get("/healthz")
    assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]
    assert health.status_code == 503 and health.json()["status"] == "shutting down"


def test_served_faces_do_not_spin_beside_the_poem_decoder(tiny_poems_dir, tiny_faces_model):
    from genrt.serve.service import load_models
    models = load_models(ServeConfig(model_dir=str(tiny_poems_dir), faces_model_dir=str(tiny_faces_model),
                                     threads=1))
    try:
        options = models.faces._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    finally:
        models.engine.close(drain=False)


class FailingEngine(FakeEngine):
    """Every request fails as a graph failure the routes do not map (onnxruntime's error inside a step)."""

    def submit(self, prompt: str, stream: bool = False, **options):
        handle = super().submit(prompt, stream, **options)
        handle.finish(RuntimeError("onnxruntime: decoder failed"))
        return handle


@pytest.mark.parametrize("path, body, last", [
    ("/v1/poems", {"prompt": "春江", "stream": True}, "event: error"),
    ("/v1/completions", {"model": "genrt-poems", "prompt": "春江", "stream": True}, "data: [DONE]"),
])
def test_a_stream_whose_request_fails_unexpectedly_ends_with_an_error_event(tiny_generators, caplog, path, body,
                                                                           last):
    caplog.set_level(logging.INFO, logger="genrt.serve")
    with app_client(models=Models(*tiny_generators, FailingEngine(auto=False))) as client:
        r = client.post(path, json=body)
        metrics = client.get("/metrics").text
    assert r.status_code == 200                       # the stream had started
    kind = json.loads(next(line for line in r.text.splitlines() if '"error"' in line)[6:])["error"]["type"]
    assert f'genrt_stream_errors_total{{endpoint="{path}",kind="{kind}"}} 1.0' in metrics
    assert any(f" 200 (stream ended: {kind})" in rec.getMessage() for rec in caplog.records)
    assert "internal error (logged on the server)" in r.text and "decoder failed" not in r.text
    assert r.text.rstrip().splitlines()[-1 if last.startswith("data") else -2].startswith(last)
    assert any("stream failed" in rec.getMessage() for rec in caplog.records)


def test_stopping_while_the_models_load_closes_what_they_load(tiny_generators):
    """A server stopped before its models finished loading waits for the load (a thread cannot be stopped) and
    closes the engine it built: no engine threads or processes outlive the server."""
    from genrt.serve.service import Service
    started, engine = threading.Event(), FakeEngine()

    def loader():
        started.set()
        time.sleep(0.3)
        return Models(*tiny_generators, engine)

    async def run():
        service = Service(ServeConfig(), loader)
        await service.start()
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        await service.stop()
        return service
    service = asyncio.run(run())
    assert engine.closed_with is False and service.models is None and not service.ready
