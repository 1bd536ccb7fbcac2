"""genrt.serve.routes through FastAPI's test client: /v1/poems (plain and streamed), /v1/score, /v1/faces,
/healthz, /metrics and the page, with the tiny test models behind a real engine."""
from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from genrt.serve.sse import parse_events  # noqa: E402
from tests.serve_fakes import FakeEngine, app_client, fake_models, real_models, tiny_generators  # noqa: F401,E402


def test_poem_matches_the_generator(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", json={"prompt": "春江", "do_sample": False, "max_new_tokens": 12})
    assert r.status_code == 200, r.text
    (poem,) = r.json()["poems"][0]
    direct = real_models.poems.generate("春江", do_sample=False, max_new_tokens=12)[0]
    assert (poem["text"], poem["finished"]) == (direct.text, direct.finished)
    assert poem["score"] == pytest.approx(direct.score)
    assert len(poem["tones"]) == len(poem["text"]) and r.json()["seed"] is None


def test_prompt_list_and_options_by_python_name(real_models):
    body = {"prompt": ["春江", "秋月"], "do_sample": True, "seed": 3, "num_return_sequences": 2,
            "max_new_tokens": 10, "top_k": 5}
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["seed"] == 3 and [len(p) for p in out["poems"]] == [2, 2]
    direct = real_models.poems.generate(["春江", "秋月"], do_sample=True, seed=3, num_return_sequences=2,
                                        max_new_tokens=10, top_k=5)
    assert [[p["text"] for p in ps] for ps in out["poems"]] == [[p.text for p in ps] for ps in direct]


def test_sampling_without_seed_returns_the_seed_drawn(real_models):
    with app_client(models=real_models) as client:
        first = client.post("/v1/poems", json={"prompt": "春江", "do_sample": True, "max_new_tokens": 8}).json()
        again = client.post("/v1/poems", json={"prompt": "春江", "do_sample": True, "max_new_tokens": 8,
                                               "seed": first["seed"]}).json()
    assert isinstance(first["seed"], int) and again["poems"] == first["poems"]


def test_stream_sends_pieces_then_the_poem(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", json={"prompt": "春江", "do_sample": False, "max_new_tokens": 12, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    events = parse_events(r.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"piece"}
    pieces = [data["text"] for name, data in events if name == "piece"]
    done = events[-1][1]["poem"]
    assert "".join(pieces) == done["text"] == real_models.poems.generate("春江", do_sample=False,
                                                                          max_new_tokens=12)[0].text
    assert all(len(d["tones"]) == len(d["text"]) for n, d in events if n == "piece")


def test_stream_of_several_poems_is_refused(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", json={"prompt": ["春江", "秋月"], "stream": True})
    assert r.status_code == 400 and "one prompt" in r.json()["error"]["message"]


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": "春江", "top_k": -1}, 400, "top_k"),                           # genrt's own check, one line
    ({"prompt": "春江", "num_beams": 2, "num_return_sequences": 3}, 400, "num_return_sequences"),
    ({"prompt": "春江", "form": "sonnet"}, 400, "form"),
    ({"prompt": "春江", "top_k": "5"}, 422, "top_k"),                           # the schema: strict types
    ({"prompt": "春江", "nonsense": 1}, 422, "nonsense"),
    ({"prompts": "春江"}, 422, "prompt"),
    ({"prompt": []}, 400, "no prompt"),
    ({"prompt": ["春"] * 65}, 400, "limit is 64"),
    ({"prompt": 7}, 422, "prompt"),
    ({"prompt": "春江", "do_sample": True, "seed": 2**70}, 400, "seed must be an integer from 0 to"),
    ({"prompt": "春 江", "mode": "continue"}, 400, "unknown: ' '"),
])
def test_bad_poem_requests_get_one_line(real_models, body, status, words):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and "\n" not in error["message"]
    assert error["type"] == "invalid_request_error" and "Traceback" not in r.text


def test_malformed_json_is_400(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", content='{"prompt": "春'.encode(), headers={"content-type": "application/json"})
        empty = client.post("/v1/poems", content=b"", headers={"content-type": "application/json"})
        listed = client.post("/v1/poems", json=["春江"])
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    assert empty.status_code == 400 and listed.status_code == 422


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_body_not_sent_as_json_is_415_saying_so(real_models, content_type):
    """curl -d without -H 'Content-Type: application/json' sends a form: say what to send, not a schema error."""
    headers = {"content-type": content_type} if content_type else {}
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", content='{"prompt": "春江"}'.encode(), headers=headers)
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]["message"], r.text


def test_a_body_not_in_utf8_is_named(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", content='{"prompt": "秋思"}'.encode("gbk"),
                        headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not JSON text in UTF-8"


def test_a_body_nested_too_deeply_is_malformed_json(real_models):
    with app_client(models=real_models) as client:
        r = client.post("/v1/poems", content=b"[" * 100_000 + b"]" * 100_000,
                        headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "malformed JSON (the body is nested too deeply)"


def test_probes_answer_head(real_models):
    with app_client(models=real_models) as client:
        assert client.head("/healthz").status_code == 200 and client.head("/metrics").status_code == 200
        assert client.head("/").status_code == 200 and client.head("/v1/models").status_code == 200
        assert client.get("/favicon.ico").status_code == 204


def test_queue_full_is_429_with_retry_after(fake_models):
    fake_models.engine.auto = False
    with app_client(models=fake_models, max_queued=4, request_timeout=5) as client:
        engine = fake_models.engine
        for _ in range(4):
            engine.submit("春江")
        r = client.post("/v1/poems", json={"prompt": "春江"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "rate_limit_error"
        # a list that does not fit is refused whole: nothing of it stays queued
        engine.release()
        engine.submit("春江")
        r = client.post("/v1/poems", json={"prompt": ["春江"] * 4})
        assert r.status_code == 429 and len(engine.waiting) == 1
        engine.release()


def test_request_timeout_is_503_and_cancels(fake_models):
    fake_models.engine.auto = False
    with app_client(models=fake_models, request_timeout=0.3) as client:
        r = client.post("/v1/poems", json={"prompt": "春江"})
        streamed = client.post("/v1/poems", json={"prompt": "春江", "stream": True})
    assert r.status_code == 503 and r.json()["error"]["type"] == "timeout_error"
    assert parse_events(streamed.text) == [("error", {"error": {"message": "the request took longer than 0.3 s",
                                                              "type": "timeout_error"}})]
    assert all(h.cancelled for h in fake_models.engine.handles)


def test_score_matches_the_generator(real_models):
    pairs = {"prompts": ["春江", "秋月"], "poems": ["春江花月夜，山水。", "秋月明光。"]}
    with app_client(models=real_models) as client:
        r = client.post("/v1/score", json=pairs)
        bad = client.post("/v1/score", json={"prompts": ["春江"], "poems": ["春江", "秋"]})
        unknown = client.post("/v1/score", json={"prompts": "春江", "poems": "ABC"})
    assert r.status_code == 200, r.text
    direct = real_models.poems.score(pairs["prompts"], pairs["poems"])
    assert [s["logprob"] for s in r.json()["scores"]] == pytest.approx([s.logprob for s in direct])
    assert bad.status_code == 400 and "as many prompts as poems" in bad.json()["error"]["message"]
    assert unknown.status_code == 400 and "vocabulary" in unknown.json()["error"]["message"]


def test_revise_matches_the_generator(real_models):
    poem = real_models.poems.generate("春江", max_new_tokens=40)[0].text
    body = {"prompt": "春江", "poem": poem, "line": 2, "num_alternatives": 2, "num_beams": 3}
    with app_client(models=real_models) as client:
        r = client.post("/v1/revise", json=body)
        bad = client.post("/v1/revise", json={**body, "line": 60})
        unknown = client.post("/v1/revise", json={**body, "colour": "red"})
        not_for_revise = client.post("/v1/revise", json={**body, "num_return_sequences": 5})
    assert r.status_code == 200, r.text
    assert not_for_revise.status_code == 422 and "num_return_sequences" in not_for_revise.text
    direct = real_models.poems.revise("春江", poem, 2, 2, num_beams=3)
    assert [p["text"] for p in r.json()["poems"]] == [p.text for p in direct]
    assert all(len(p["tones"]) == len(p["text"]) for p in r.json()["poems"])
    assert bad.status_code == 400 and "verse number" in bad.json()["error"]["message"]
    assert unknown.status_code == 422


def test_faces_formats_match_the_generator(real_models):
    expected = real_models.faces.generate(4, seed=7, truncation=0.5)
    with app_client(models=real_models) as client:
        png = client.post("/v1/faces", json={"n": 4, "seed": 7, "truncation": 0.5})
        archive = client.post("/v1/faces", json={"n": 4, "seed": 7, "truncation": 0.5, "format": "zip"})
        as_json = client.post("/v1/faces", json={"n": 4, "seed": 7, "truncation": 0.5, "format": "json"})
        drawn = client.post("/v1/faces", json={"n": 1})
    assert png.headers["content-type"] == "image/png" and png.headers["x-genrt-seed"] == "7"
    grid = np.asarray(Image.open(io.BytesIO(png.content)))
    assert grid.shape == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2, 3) and np.array_equal(grid[2:66, 2:66], expected[0])
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.namelist() == ["face_0000.png", "face_0001.png", "face_0002.png", "face_0003.png"]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(z.read("face_0003.png")))), expected[3])
    images = as_json.json()["images"]
    assert as_json.json()["seed"] == 7 and len(images) == 4
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(images[1])))), expected[1])
    assert drawn.status_code == 200 and int(drawn.headers["x-genrt-seed"]) >= 0


def test_faces_filter_matches_the_generator(real_models):
    expected = real_models.faces.generate(3, seed=5, keep=0.5)
    with app_client(models=real_models) as client:
        r = client.post("/v1/faces", json={"n": 3, "seed": 5, "filter": 0.5, "format": "json"})
    assert r.status_code == 200, r.text
    got = [np.asarray(Image.open(io.BytesIO(base64.b64decode(image)))) for image in r.json()["images"]]
    assert np.array_equal(np.stack(got), expected)


@pytest.mark.parametrize("body, words", [({"n": 65}, "n"), ({"n": 0}, "n"), ({"truncation": 0}, "truncation"),
                                         ({"truncation": 1.5}, "truncation"), ({"format": "gif"}, "format"),
                                         ({"seed": -1}, "seed"), ({"filter": 0}, "filter"),
                                         ({"filter": 1.5}, "filter"), ({"n": 64, "filter": 0.2}, "filter 0.2 draws"),
                                         ({"n": 1, "filter": 1e-310}, "faces drawn to keep 1")])
def test_faces_are_capped_like_the_cli(real_models, body, words):
    with app_client(models=real_models) as client:
        r = client.post("/v1/faces", json=body)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith(words)


def test_healthz_is_503_until_the_models_load(tiny_generators):
    import threading
    from genrt.serve.service import Models
    loaded, release = threading.Event(), threading.Event()

    def loader():
        release.wait(10)
        loaded.set()
        return Models(*tiny_generators, FakeEngine())
    with app_client(models=loader) as client:
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert r.json()["error"]["type"] == "service_unavailable"
        assert client.post("/v1/poems", json={"prompt": "春江"}).status_code == 503
        release.set()
        loaded.wait(5)
        for _ in range(100):
            if client.get("/healthz").status_code == 200:
                break
            import time
            time.sleep(0.02)
        assert client.get("/healthz").json()["status"] == "ready"


def test_a_failed_load_is_named(tmp_path):
    def loader():
        raise ValueError(f"{tmp_path}: no manifest.json")
    with app_client(models=loader) as client:
        import time
        for _ in range(100):
            if client.get("/healthz").json()["status"] == "failed":
                break
            time.sleep(0.02)
        r = client.get("/healthz")
        assert r.status_code == 503 and "no manifest.json" in r.json()["error"]["message"]
        assert "no manifest.json" in client.post("/v1/faces", json={}).json()["error"]["message"]


class ProcessesEngine(FakeEngine):
    """A FakeEngine that reports processes as EnginePool does, `alive` of two running."""
    alive = 2

    def stats(self) -> dict:
        return {**super().stats(), "processes": 2, "processes_alive": self.alive, "restarts": 3}

    def submit(self, prompt: str, stream: bool = False, **options):
        if not self.alive:
            from genrt.poems.engine import EngineFailed
            raise EngineFailed("the poem engine process stopped unexpectedly (exit code -9); others are starting")
        return super().submit(prompt, stream, **options)


def test_health_and_requests_tell_of_engine_processes_that_died(tiny_generators):
    from genrt.serve.service import Models
    engine = ProcessesEngine()
    with app_client(models=Models(*tiny_generators, engine)) as client:
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        text = client.get("/metrics").text
        assert "genrt_engine_processes_alive 2.0" in text and "genrt_engine_restarts_total 3.0" in text
        engine.alive = 1                                   # one replaced: the service answers, at half its lanes
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "degraded"
        assert client.post("/v1/poems", json={"prompt": "春江"}).status_code == 200
        engine.alive = 0
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "restarting" and r.headers["Retry-After"]
        for path in ("/v1/poems", "/v1/completions"):
            r = client.post(path, json={"prompt": "春江", "model": "genrt-poems"} if "compl" in path else
                            {"prompt": "春江"})
            assert r.status_code == 503 and r.headers["Retry-After"], (path, r.text)
            assert "exit code -9" in r.json()["error"]["message"] and "shutting down" not in r.text
        stream = client.post("/v1/poems", json={"prompt": "春江", "stream": True})
        assert stream.status_code == 503 and "exit code -9" in stream.text


def test_metrics_count_requests_and_read_the_engine(real_models):
    with app_client(models=real_models) as client:
        client.post("/v1/poems", json={"prompt": "春江", "max_new_tokens": 5, "do_sample": False})
        client.post("/v1/poems", json={"prompt": 1})
        client.get("/nowhere")
        text = client.get("/metrics").text
    assert 'genrt_http_requests_total{endpoint="/v1/poems",status="200"} 1.0' in text
    assert 'genrt_http_requests_total{endpoint="/v1/poems",status="422"} 1.0' in text
    assert 'genrt_http_requests_total{endpoint="other",status="404"} 1.0' in text
    assert 'genrt_http_request_seconds_bucket{endpoint="/v1/poems",le="+Inf"} 2.0' in text
    for name in ("genrt_engine_queue_depth", "genrt_engine_active_rows", "genrt_engine_generated_tokens_total"):
        assert name in text
    tokens = next(line for line in text.splitlines() if line.startswith("genrt_engine_generated_tokens_total"))
    assert float(tokens.split()[-1]) >= 5


def test_page_and_its_files_come_from_this_server(real_models):
    with app_client(models=real_models, api_key="k") as client:
        page = client.get("/")
        script = client.get("/static/app.js")
        style = client.get("/static/style.css")
    assert page.status_code == 200 and "<title>genrt playground</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and style.status_code == 200
    for text in (page.text, script.text, style.text):          # offline: no other origin
        assert "http://" not in text and "https://" not in text


def test_the_page_keeps_its_headers_wherever_it_is_served(real_models):
    """index.html is reachable under /static too: not to be framed or fed another origin's scripts there either."""
    with app_client(models=real_models) as client:
        for path in ("/", "/static/index.html", "/static/app.js"):
            r = client.get(path)
            assert r.status_code == 200, path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
            assert r.headers["x-content-type-options"] == "nosniff", path


def test_unknown_path_and_method(real_models):
    with app_client(models=real_models) as client:
        missing = client.get("/v2/poems")
        wrong = client.get("/v1/poems")
    assert missing.status_code == 404 and missing.json()["error"] == {"message": "no such path: /v2/poems",
                                                                       "type": "not_found_error"}
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_openapi_schema_lists_every_endpoint(real_models):
    import warnings
    with app_client(models=real_models) as client, warnings.catch_warnings():
        warnings.simplefilter("error")                          # e.g. FastAPI's duplicate operation ids
        schema = client.get("/openapi.json").json()
    assert {"/v1/poems", "/v1/score", "/v1/faces", "/v1/completions", "/v1/models", "/healthz",
            "/metrics"} <= set(schema["paths"])
    options = schema["components"]["schemas"]["PoemRequest"]["properties"]
    assert {"prompt", "stream", "num_beams", "do_sample", "top_p", "form", "tonal", "rhyme", "acrostic"} <= set(options)
