"""genrt.serve.completions: OpenAI's completions and models shapes, and the real `openai` client against a
uvicorn server on a free loopback port."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from genrt.serve.app import create_app  # noqa: E402
from genrt.serve.config import ServeConfig  # noqa: E402
from tests.serve_fakes import app_client, real_models, tiny_generators, uvicorn_server  # noqa: F401,E402


def test_models_list_and_card(real_models):
    with app_client(models=real_models) as client:
        listed = client.get("/v1/models").json()
        card = client.get("/v1/models/genrt-poems").json()
        missing = client.get("/v1/models/gpt-4")
    assert listed["object"] == "list" and listed["data"] == [card] and card["id"] == "genrt-poems"
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_completion_shape_and_mapping(real_models):
    body = {"model": "genrt-poems", "prompt": ["春江", "秋月"], "max_tokens": 10, "temperature": 0.7, "top_p": 0.9,
            "n": 2, "seed": 4}
    with app_client(models=real_models) as client:
        out = client.post("/v1/completions", json=body).json()
    direct = real_models.poems.generate(["春江", "秋月"], do_sample=True, temperature=0.7, top_p=0.9,
                                        num_return_sequences=2, seed=4, max_new_tokens=10)
    assert out["object"] == "text_completion" and out["model"] == "genrt-poems" and out["id"].startswith("cmpl-")
    assert [c["index"] for c in out["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in out["choices"]] == [p.text for ps in direct for p in ps]
    assert [c["finish_reason"] for c in out["choices"]] == ["stop" if p.finished else "length"
                                                           for ps in direct for p in ps]
    usage = out["usage"]
    assert usage["prompt_tokens"] == 4 and usage["total_tokens"] == 4 + sum(len(p.text) for ps in direct for p in ps)


def test_temperature_zero_is_greedy_and_continue_mode_returns_the_continuation(real_models):
    with app_client(models=real_models) as client:
        greedy = client.post("/v1/completions", json={"model": "genrt-poems", "prompt": "春江", "temperature": 0,
                                                      "max_tokens": 12}).json()
        cont = client.post("/v1/completions", json={"model": "genrt-poems", "prompt": "春江花月夜，",
                                                    "temperature": 0, "max_tokens": 12, "mode": "continue"}).json()
    assert greedy["choices"][0]["text"] == real_models.poems.generate("春江", do_sample=False,
                                                                      max_new_tokens=12)[0].text
    whole = real_models.poems.generate("春江花月夜，", mode="continue", do_sample=False, max_new_tokens=12)[0].text
    assert whole.startswith("春江花月夜，") and cont["choices"][0]["text"] == whole[len("春江花月夜，"):]


def test_stream_chunks_then_done(real_models):
    body = {"model": "genrt-poems", "prompt": "春江花月夜，", "temperature": 0, "max_tokens": 12, "stream": True,
            "mode": "continue", "stream_options": {"include_usage": True}}
    with app_client(models=real_models) as client:
        r = client.post("/v1/completions", json=body)
    lines = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    whole = real_models.poems.generate("春江花月夜，", mode="continue", do_sample=False, max_new_tokens=12)[0].text
    assert text == whole[len("春江花月夜，"):]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] == len(text)


@pytest.mark.parametrize("body, status, words", [
    ({"model": "gpt-4", "prompt": "春江"}, 404, "does not exist"),
    ({"model": "genrt-poems", "prompt": "春江", "stop": ["。"]}, 400, "stop"),
    ({"model": "genrt-poems", "prompt": "春江", "logprobs": 2}, 400, "logprobs"),
    ({"model": "genrt-poems", "prompt": "春江", "n": 2, "stream": True}, 400, "n = 1"),
    ({"model": "genrt-poems", "prompt": "春江", "top_p": 2.0}, 400, "top_p"),
    ({"model": "genrt-poems", "prompt": [1, 2, 3]}, 422, "prompt"),
    ({"model": "genrt-poems"}, 422, "prompt"),
    ({"model": "genrt-poems", "prompt": "春江", "n": 1000}, 422, "n: Input should be less than or equal to 64"),
    ({"model": "genrt-poems", "prompt": "春江", "n": 2, "temperature": 0}, 400, "n = 2 needs sampling"),
    ({"model": "genrt-poems", "prompt": "春江", "seed": 2**63}, 422, "seed"),
    ({"model": "genrt-poems", "prompt": "春江", "max_tokens": 100_000}, 422,
     "max_tokens: Input should be less than or equal to 4096"),
])
def test_completion_errors(real_models, body, status, words):
    with app_client(models=real_models) as client:
        r = client.post("/v1/completions", json=body)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text



@pytest.fixture
def running_server(real_models):
    pytest.importorskip("uvicorn")
    with uvicorn_server(create_app(ServeConfig(api_key="sk-test"), real_models)) as url:
        yield f"{url}/v1"


def test_the_openai_client_works_unchanged(running_server, real_models):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=running_server, api_key="sk-test", max_retries=0)
    assert [m.id for m in client.models.list()] == ["genrt-poems"]
    done = client.completions.create(model="genrt-poems", prompt="春江", max_tokens=12, temperature=0)
    expected = real_models.poems.generate("春江", do_sample=False, max_new_tokens=12)[0].text
    assert done.choices[0].text == expected and done.usage.completion_tokens == len(expected)
    streamed = client.completions.create(model="genrt-poems", prompt="春江", max_tokens=12, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == expected
    sampled = client.completions.create(model="genrt-poems", prompt="秋月", max_tokens=8, temperature=0.8, seed=5,
                                        n=2)
    assert len(sampled.choices) == 2
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="春江")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=running_server, api_key="wrong", max_retries=0).models.list()
