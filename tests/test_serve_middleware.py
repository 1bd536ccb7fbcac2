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
