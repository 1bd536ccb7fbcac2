"""OpenAI's completions API over the poem engine, so an OpenAI client library works unchanged:

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY or anything")
    client.completions.create(model="genrt-poems", prompt="春江花月夜", max_tokens=64, temperature=0.8, seed=1)

prompt -> a title (or with the genrt field "mode": "continue" a first line, whose continuation is the text);
max_tokens -> max_new_tokens, temperature (0 = greedy), top_p, n -> num_return_sequences, seed; left out, the
model's recommended settings. Tokens are characters.
"""
from __future__ import annotations

import secrets
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response

from genrt.serve import sse
from genrt.serve.errors import ApiError
from genrt.serve.middleware import CLIENT_CLOSED
from genrt.serve.routes import ERRORS, await_poems, service_of, stream_error, submit, with_seed
from genrt.serve.schemas import CompletionRequest, prompt_list
from genrt.serve.service import Service

MODEL_ID = "genrt-poems"
CREATED = 0                     # a model card's "created" time: the bundled model has none to give

router = APIRouter()


def model_card() -> dict:
    return {"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "genrt"}


@router.get("/v1/models")
@router.head("/v1/models", include_in_schema=False)
async def list_models() -> dict:
    """The models /v1/completions serves (OpenAI's list shape)."""
    return {"object": "list", "data": [model_card()]}


@router.get("/v1/models/{model_id}", responses=ERRORS)
async def get_model(model_id: str) -> dict:
    if model_id != MODEL_ID:
        raise ApiError(404, f"the model {model_id!r} does not exist; this server has {MODEL_ID!r}")
    return model_card()


def generate_options(body: CompletionRequest) -> dict:
    """OpenAI's sampling fields as genrt generate options (only those the request names)."""
    options: dict[str, Any] = {}
    if body.mode is not None:
        options["mode"] = body.mode
    if body.max_tokens is not None:
        options["max_new_tokens"] = body.max_tokens
    if body.temperature == 0:
        options["do_sample"] = False
    elif body.temperature is not None or body.top_p is not None:
        options["do_sample"] = True
        if body.temperature is not None:
            options["temperature"] = body.temperature
        if body.top_p is not None:
            options["top_p"] = body.top_p
    if body.n != 1:
        options["num_return_sequences"] = body.n
    if body.seed is not None:
        options["seed"] = body.seed
    return options


def continuation(text: str, prompt: str, mode: str | None) -> str:
    """The text after the prompt: in continue mode a poem starts with its given (normalised) first line."""
    return text[len(prompt.strip()):] if mode == "continue" else text


@router.post("/v1/completions", responses={**ERRORS, 404: {"description": "no such model"}})
async def completions(body: CompletionRequest, request: Request) -> Any:
    """OpenAI completions: one choice per (prompt, n); stream: OpenAI's chunks, then [DONE]."""
    service = service_of(request)
    if body.model != MODEL_ID:
        raise ApiError(404, f"the model {body.model!r} does not exist; this server has {MODEL_ID!r}")
    unsupported = body.unsupported()
    if unsupported:
        raise ApiError(400, f"not supported by genrt: {', '.join(unsupported)}")
    if body.n > 1 and body.temperature == 0:          # said in OpenAI's terms, before genrt's options say it in its own
        raise ApiError(400, f"n = {body.n} needs sampling: temperature 0 decodes one completion per prompt")
    models = service.ready_models()
    prompts = prompt_list(body.prompt)
    options, _ = with_seed(models, generate_options(body))
    if body.stream and (len(prompts) != 1 or body.n != 1):
        raise ApiError(400, "stream sends one completion: give one prompt and n = 1")
    handles = await submit(service, models, prompts, options, body.stream)
    ident, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return sse.event_stream(chunks(service, body, handles[0], ident, created, include_usage, request.scope))

    results = await await_poems(service, request, handles)
    if results is None:
        return Response(status_code=CLIENT_CLOSED)
    choices, used = [], 0
    for prompt, poems in zip(prompts, results):
        for poem in poems:
            text = continuation(poem.text, prompt, body.mode)
            used += len(text)
            choices.append({"text": text, "index": len(choices), "logprobs": None,
                            "finish_reason": "stop" if poem.finished else "length"})
    prompt_tokens = sum(len(p) for p in prompts)
    return {"id": ident, "object": "text_completion", "created": created, "model": MODEL_ID, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                      "total_tokens": prompt_tokens + used}}


async def chunks(service: Service, body: CompletionRequest, handle: Any, ident: str, created: int,
                 include_usage: bool, scope: dict) -> AsyncIterator[bytes]:
    def chunk(text: str, finish: str | None) -> dict:
        return {"id": ident, "object": "text_completion", "created": created, "model": MODEL_ID,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    skip = len(prompt.strip()) if body.mode == "continue" else 0      # the given line is not completion text
    deadline, sent = time.monotonic() + service.config.request_timeout, 0
    try:
        async for pieces in handle.apiece_batches(deadline, sse.STREAM_INTERVAL_S):   # TimeoutError past it
            events = []
            for piece in pieces:
                cut = min(skip, len(piece))
                piece, skip = piece[cut:], skip - cut
                if piece:
                    sent += len(piece)
                    events.append(sse.event(chunk(piece, None)))
            if events:
                yield b"".join(events)
        (poem, *_) = await handle.aresult()
        yield sse.event(chunk("", "stop" if poem.finished else "length"))
        if include_usage:
            usage = {"prompt_tokens": len(prompt), "completion_tokens": sent, "total_tokens": len(prompt) + sent}
            yield sse.event({**chunk("", None), "choices": [], "usage": usage})
    except Exception as e:
        error = stream_error(service, e, "completion")
        sse.note_stream_end(scope, error.type)
        yield sse.event(error.body())
    finally:
        if not handle.done:
            sse.note_stream_end(scope, "client_closed")
            handle.cancel()
    yield sse.event("[DONE]")
