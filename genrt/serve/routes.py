"""genrt's own endpoints: /v1/poems, /v1/revise, /v1/score, /v1/faces, /healthz, /metrics, and the page at /."""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import secrets
import time
import zipfile
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from genrt.decoding.scheduler import Cancelled
from genrt.faces.images import image_names, make_grid
from genrt.poems.engine import EngineClosed, EngineFailed, EngineFull
from genrt.serve import sse
from genrt.serve.errors import ApiError, bad_value
from genrt.serve.middleware import CLIENT_CLOSED
from genrt.serve.schemas import (FacesRequest, PoemRequest, PoemsResponse, ReviseRequest, ReviseResponse, ScoreRequest,
                                 ScoreResponse, given_options, prompt_list, score_pairs)
from genrt.serve.service import Busy, ClientGone, Models, Service
from genrt.serve.tones import tone_marks

STATIC = Path(__file__).with_name("static")
# The page and its files come from this process only: no CDN, no other origin.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
ERRORS = {status: {"description": text, "content": {"application/json": {"example": {
    "error": {"message": "...", "type": kind}}}}} for status, text, kind in (
    (400, "malformed JSON or a value genrt refuses", "invalid_request_error"),
    (401, "missing or wrong API key", "authentication_error"),
    (413, "body over the size limit", "request_too_large"),
    (422, "the body does not fit the schema", "invalid_request_error"),
    (429, "queue full (see Retry-After)", "rate_limit_error"),
    (503, "loading, shutting down, or over the request timeout", "service_unavailable"))}
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"}


class PageFiles(StaticFiles):
    """The page's files under /static, each with the page's headers: index.html is reachable there too, and must
    not be framed or run another origin's scripts there either."""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response

log = logging.getLogger("genrt.serve")
router = APIRouter()


def service_of(request: Request) -> Service:
    return request.app.state.service


def poem_json(poem: Any) -> dict:
    return {**asdict(poem), "tones": tone_marks(poem.text)}


def request_error(service: Service, e: BaseException) -> ApiError:
    """A poem request's failure as the client sees it."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, EngineFull):
        return service.queue_full("poems")
    if isinstance(e, EngineFailed):                   # an engine process died; the pool is starting another
        return ApiError(503, str(e), headers={"Retry-After": str(service.config.retry_after)})
    if isinstance(e, (EngineClosed, Cancelled)):
        return ApiError(503, "the service is shutting down")
    if isinstance(e, TimeoutError):
        return service.timed_out()
    if isinstance(e, ValueError):
        return bad_value(e)
    raise e


def stream_error(service: Service, e: BaseException, what: str) -> ApiError:
    """The error a stream sends as its last event, after its 200 went out: request_error's, or for anything it
    does not map (a bug, a graph failure) a 500 whose cause is logged on the server, not sent."""
    try:
        return request_error(service, e)
    except Exception:
        log.exception("%s stream failed", what)
        return ApiError(500, "internal error (logged on the server)")


def with_seed(models: Models, options: dict) -> tuple[dict, int | None]:
    """Sampling without a seed gets one drawn here and returned, so the client can repeat the poem (as the CLI
    prints it). -> (options, the seed a sampling request uses, else None)."""
    try:
        resolved = models.poems.options(**options)
    except ValueError as e:
        raise bad_value(e) from None
    if not resolved.do_sample:
        return options, None
    if resolved.seed is None:
        options = {**options, "seed": secrets.randbelow(2**31)}
    return options, options.get("seed", resolved.seed)


async def submit(service: Service, models: Models, prompts: list[str], options: dict, stream: bool = False
                 ) -> list:
    """One engine request per prompt, all or none: once the engine holds every one (a refusal cancels the ones
    already queued). Submitting runs on the event loop (~0.1 ms per prompt, cheaper than a thread hop)."""
    handles = []
    try:
        for prompt in prompts:
            handles.append(models.engine.submit(prompt, stream=stream, **options))
        for handle in handles:
            await handle.accepted()          # an engine in a process of its own answers through its pipe
    except BaseException as e:
        for handle in handles:
            handle.cancel()
        if isinstance(e, (ValueError, EngineFull, EngineClosed, EngineFailed)):
            raise request_error(service, e) from None
        raise
    return handles


@router.post("/v1/poems", response_model=PoemsResponse, responses={**ERRORS, 200: {
    "description": "the poems, one list per prompt; with stream: Server-Sent Events (piece ..., done)",
    "content": {"text/event-stream": {}}}})
async def poems(body: PoemRequest, request: Request) -> Any:
    """Poems for one prompt or a list of prompts, with any generate option by its Python name."""
    service = service_of(request)
    models = service.ready_models()
    prompts = prompt_list(body.prompt)
    options, seed = with_seed(models, given_options(body))
    if body.stream and (len(prompts) != 1 or options.get("num_return_sequences", 1) != 1):
        raise ApiError(400, "stream sends one poem: give one prompt and no num_return_sequences")
    handles = await submit(service, models, prompts, options, body.stream)
    if body.stream:
        return sse.event_stream(poem_events(service, handles[0], seed, request.scope))

    results = await await_poems(service, request, handles)
    if results is None:
        return Response(status_code=CLIENT_CLOSED)
    return {"poems": [[poem_json(p) for p in per_prompt] for per_prompt in results], "seed": seed}


async def await_poems(service: Service, request: Request, handles: list) -> list | None:
    """Every handle's poems, within the request's deadline; a client that left (None) or an error cancels them
    all."""
    def cancel_all() -> None:
        for handle in handles:
            handle.cancel()
    try:
        return await service.bounded(request, asyncio.gather(*(h.aresult() for h in handles)), cancel_all)
    except ClientGone:
        return None
    except Exception as e:
        cancel_all()
        raise request_error(service, e) from None


async def poem_events(service: Service, handle: Any, seed: int | None, scope: dict) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + service.config.request_timeout
    try:
        async for pieces in handle.apiece_batches(deadline, sse.STREAM_INTERVAL_S):   # TimeoutError past it
            yield b"".join(sse.event({"text": piece, "tones": tone_marks(piece)}, "piece") for piece in pieces)
        (poem, *_) = await handle.aresult()
        yield sse.event({"poem": poem_json(poem), "seed": seed}, "done")
    except Exception as e:
        error = stream_error(service, e, "poem")
        sse.note_stream_end(scope, error.type)
        yield sse.event(error.body(), "error")
    finally:
        if not handle.done:                                # the client left, or the deadline passed
            sse.note_stream_end(scope, "client_closed")
            handle.cancel()


async def bounded_work(service: Service, request: Request, kind: str, work: Callable[[], Any]) -> Any:
    """Run a blocking model call in the service's bounded pool: ClientGone -> None, a full pool -> 429, a value
    genrt refuses -> 400."""
    try:
        return await service.bounded(request, service.score_work.run(work), lambda: None)
    except Busy:
        raise service.queue_full(kind) from None
    except ValueError as e:
        raise bad_value(e) from None


@router.post("/v1/revise", response_model=ReviseResponse, responses=ERRORS)
async def revise(body: ReviseRequest, request: Request) -> Any:  # type: ignore[valid-type]
    """A poem with one verse written again, every other verse kept (as `genrt revise`)."""
    service = service_of(request)
    models = service.ready_models()
    try:
        versions = await bounded_work(service, request, "revise", partial(
            models.poems.revise, body.prompt, body.poem, body.line, body.num_alternatives, **given_options(body)))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return {"poems": [poem_json(v) for v in versions]}


@router.post("/v1/score", response_model=ScoreResponse, responses=ERRORS)
async def score(body: ScoreRequest, request: Request) -> Any:
    """Log-probability of each (prompt, poem) pair under the model (as `genrt score`)."""
    service = service_of(request)
    models = service.ready_models()
    prompts, poems_ = score_pairs(body)
    try:
        results = await bounded_work(service, request, "score",
                                     partial(models.poems.score, prompts, poems_, mode=body.mode))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return {"scores": [asdict(r) for r in results]}


FACES_MEDIA = {"png": "image/png", "zip": "application/zip"}


@router.post("/v1/faces", responses={**ERRORS, 200: {"description": "a PNG grid, a zip of PNGs, or JSON with "
                                                                     "base64 PNGs; the seed in X-Genrt-Seed",
                                                      "content": {"image/png": {}, "application/zip": {}}}})
async def faces(body: FacesRequest, request: Request) -> Any:
    """Faces for a seed (drawn when left out): one grid PNG, a zip of PNGs, or base64 PNGs in JSON."""
    service = service_of(request)
    models = service.ready_models()
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    work = service.faces_work.run(render_faces, models.faces, body, seed)
    try:
        content = await service.bounded(request, work, lambda: None)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    except Busy:
        raise service.queue_full("faces") from None
    except ValueError as e:
        raise bad_value(e) from None
    headers = {"X-Genrt-Seed": str(seed)}
    if body.format == "json":
        return JSONResponse({"seed": seed, "images": content}, headers=headers)
    return Response(content, media_type=FACES_MEDIA[body.format], headers=headers)


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def render_faces(generator: Any, body: FacesRequest, seed: int) -> bytes | list[str]:
    """In a worker thread, all in memory: images (n, 64, 64, 3) -> the requested format."""
    images = generator.generate(body.n, seed=seed, truncation=body.truncation, keep=body.filter)
    if body.format == "png":
        return png_bytes(make_grid(images, body.nrow))
    if body.format == "json":
        return [base64.b64encode(png_bytes(image)).decode("ascii") for image in images]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:      # PNGs are compressed already
        for name, image in zip(image_names(len(images)), images):
            archive.writestr(name, png_bytes(image))
    return out.getvalue()


@router.get("/healthz", responses={503: {"description": "not ready: loading, failed or shutting down"}})
@router.head("/healthz", include_in_schema=False)      # HEAD: the same answer without a body (one schema entry)
async def healthz(request: Request) -> JSONResponse:
    """200 once the models are loaded and the service accepts requests ("degraded" while some engine processes are
    being replaced), else 503 (also while every engine process is being replaced)."""
    service = service_of(request)
    try:
        models = service.ready_models()
    except ApiError as e:
        status = "shutting down" if service.closing else "failed" if service.load_error else "loading"
        return JSONResponse({"status": status, **e.body()}, status_code=503, headers=e.headers)
    stats = models.engine.stats()
    alive = stats.get("processes_alive", 1)                 # an engine in this process has no processes to lose
    body = {"status": "ready" if alive == stats.get("processes", 1) else "degraded" if alive else "restarting",
            "provider": getattr(models.poems, "provider", None), "engine": stats}
    if alive:
        return JSONResponse(body)
    error = ApiError(503, "every poem engine process stopped; others are starting",
                     headers={"Retry-After": str(service.config.retry_after)})
    return JSONResponse({**body, **error.body()}, status_code=503, headers=error.headers)


@router.get("/metrics")
@router.head("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests by endpoint and status, latency histograms, queue depth, active rows, tokens."""
    text, media_type = request.app.state.metrics.text()
    return Response(text, media_type=media_type)


@router.get("/", include_in_schema=False)
@router.head("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """No icon: 204, so that a browser's request for one is not logged as a 404 on every page load."""
    return Response(status_code=204)
