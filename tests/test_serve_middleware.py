"""genrt.serve.middleware: the API key, the body size limit, one log line per request."""
from __future__ import annotations

import logging

import pytest

pytest.importorskip("fastapi")

from genrt.serve.config import ServeConfig  # noqa: E402
from tests.serve_fakes import app_client, fake_models, tiny_generators  # noqa: F401,E402


@pytest.mark.parametrize("header", [None, "Bearer wrong", "bearer", "Basic c2VjcmV0", "secret"])
def test_api_key_required(fake_models, header):
    headers = {"Authorization": header} if header else {}
    with app_client(models=fake_models, api_key="secret") as client:
        r = client.post("/v1/poems", json={"prompt": "春江"}, headers=headers)
        metrics = client.get("/metrics", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error" and metrics.status_code == 401


def test_api_key_accepted_and_public_paths_open(fake_models):
    with app_client(models=fake_models, api_key="secret") as client:
        ok = client.post("/v1/poems", json={"prompt": "春江"}, headers={"Authorization": "Bearer secret"})
        assert ok.status_code == 200
        for path in ("/", "/healthz", "/static/app.js"):
            assert client.get(path).status_code == 200


def test_api_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("GENRT_API_KEY", "from-env")
    monkeypatch.setenv("GENRT_SERVE_CONFIG", '{"max_queued": 3}')
    config = ServeConfig.from_environment()
    assert config.api_key == "from-env" and config.max_queued == 3


def test_body_over_the_limit_is_413(fake_models):
    with app_client(models=fake_models, max_body_bytes=100) as client:
        declared = client.post("/v1/poems", json={"prompt": "春" * 200})

        def chunks():                                           # no Content-Length: counted as it arrives
            yield b'{"prompt": "'
            for _ in range(50):
                yield b"x" * 10
            yield b'"}'
        chunked = client.post("/v1/poems", content=chunks(), headers={"content-type": "application/json"})
        fits = client.post("/v1/poems", json={"prompt": "春江"})
    for r in (declared, chunked):
        assert r.status_code == 413, r.text
        assert r.json()["error"] == {"message": "the request body is over the limit of 100 bytes",
                                     "type": "request_too_large"}
    assert fits.status_code == 200


def test_a_body_that_stalls_is_408_within_the_request_timeout(fake_models):
    """A client that sends part of its body and then nothing: answered 408 (JSON) once the request's timeout
    passes, instead of holding the connection (and a graceful shutdown) without end."""
    import asyncio
    import json
    import time
    with app_client(models=fake_models, request_timeout=0.3) as client:
        app, sent = client.app, []

        async def main():
            parts = [{"type": "http.request", "body": b'{"prompt"', "more_body": True}]

            async def receive():
                if parts:
                    return parts.pop(0)
                await asyncio.sleep(3600)                           # the rest never comes

            async def send(message):
                sent.append(message)
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v1/poems", "raw_path": b"/v1/poems", "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                     "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
                     "app": app}
            await asyncio.wait_for(app(scope, receive, send), 5)
        started = time.monotonic()
        asyncio.run(main())
    assert time.monotonic() - started < 3
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert "did not all arrive within 0.3 s" in body["error"]["message"]


def test_one_log_line_per_request(fake_models, caplog):
    with caplog.at_level(logging.INFO, logger="genrt.serve"):
        with app_client(models=fake_models) as client:
            client.post("/v1/poems", json={"prompt": "春江"})
            client.post("/v1/poems", json={"prompt": "春江", "stream": True})
            client.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "genrt.serve" and '"' in r.getMessage()]
    assert len(lines) == 3
    assert '"POST /v1/poems" 200' in lines[0] and '"GET /nowhere" 404' in lines[2]
    assert all(line.endswith("s") and "B " in line for line in lines)
