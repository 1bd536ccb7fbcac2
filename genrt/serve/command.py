"""The `genrt serve` click command: settings in, models loaded (a bad model directory is one line, exit 2),
then uvicorn runs the app until SIGINT/SIGTERM, which stop accepting, finish the requests in flight and exit 0."""
from __future__ import annotations

import os
import signal
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

from genrt import limits
from genrt.allocator import bound_malloc_arenas, retain_freed_memory
from genrt.poems.generator import BATCH_ROWS
from genrt.runtime import PRECISIONS
from genrt.serve.config import MAX_BODY_BYTES, MAX_QUEUED, REQUEST_TIMEOUT, API_KEY_VARIABLE, ServeConfig

SERVE_EXAMPLES = """\b
Examples:
  genrt serve                                     # http://127.0.0.1:8000/ : the page, /v1/..., /openapi.json
  genrt serve --port 9000 --api-key "$(cat key)"  # every API request needs Authorization: Bearer KEY
  genrt serve --workers 2 --threads 1             # two processes on one port (uvicorn's workers)
"""
SHUTDOWN_GRACE = 5.0            # seconds beyond the request timeout that a shutdown waits for answers in flight
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def missing_packages() -> list[str]:
    import importlib.util
    return [name for name in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(name) is None]


def log_config() -> dict:
    """uvicorn's own messages, genrt's request lines and genrt's other loggers (an engine process replaced) on
    stderr; uvicorn's access log is off (one line per request is genrt's, with the status, bytes and time)."""
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {"stderr": handler},
            "loggers": {name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
                        for name in ("genrt", "uvicorn", "uvicorn.error")}}


@contextmanager
def graceful_signals() -> Iterator[None]:
    """uvicorn handles SIGINT/SIGTERM itself (a graceful shutdown) and raises the signal again once it is done;
    outside it they are ignored here, so a finished graceful shutdown is an ordinary exit 0."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: None)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def models_line(models, config: ServeConfig) -> str:
    """What a server loaded and its bounds, for its log: directories, precision, provider, engine, limits."""
    poems, faces, engine = models.poems, models.faces, models.engine
    processes = getattr(engine, "engines", None)
    where = f"{len(processes)} engine processes" if processes is not None else "the engine in this process"
    return (f"poems {poems.model.model_dir} ({poems.manifest.precision}, {poems.provider}, {engine.lanes} "
            f"lane{'s' if engine.lanes != 1 else ''}, {where}), faces {faces.model_dir} ({faces.manifest.precision}"
            f"{', filter' if faces.can_filter else ''}); at most {config.max_rows} rows a lane, "
            f"{config.max_queued} queued, {config.request_timeout:g} s a request, {config.max_body_bytes:,} bytes a "
            f"body")


def address_problem(host: str, port: int) -> str | None:
    """Why uvicorn could not listen on host:port (a port in use, an address not on this machine), or None: found by
    binding a socket as uvicorn does (SO_REUSEADDR) and closing it, so that it is one line, not uvicorn's log and
    exit code 3."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:                                  # socket.gaierror is an OSError too
        return f"cannot listen on {host}:{port}: {e.strerror or e}"
    return None


@click.command("serve", epilog=SERVE_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every one)")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="poem model directory [default: the bundled model]")
@click.option("--faces-model", "faces_model_dir", type=click.Path(path_type=Path), default=None,
              help="face model directory [default: the bundled model]")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="bundled model variant [default: the fastest variant that passed its quality gate]")
@click.option("--provider", default="auto", show_default=True, help="onnxruntime execution provider (as genrt poem)")
@click.option("--threads", type=click.IntRange(min=1, max=limits.MAX_THREADS), default=None,
              help="CPU threads per onnxruntime session, and the poem engine's lanes: on CPU one engine process "
                   "per lane [default: physical cores, divided among --workers]")
@click.option("--max-rows", type=click.IntRange(1, 4096), default=BATCH_ROWS, show_default=True,
              help="decoder rows one engine lane steps together (prompts x beams or samples; one lane per "
                   "thread)")
@click.option("--max-queued", type=click.IntRange(1, 100_000), default=MAX_QUEUED, show_default=True,
              help="requests that may wait (shared out among the engine processes); more get 429 with "
                   "Retry-After")
@click.option("--timeout", "request_timeout", type=click.FloatRange(0, 3600, min_open=True),
              default=REQUEST_TIMEOUT, show_default=True, help="seconds a request may take, queueing included")
@click.option("--max-body-bytes", type=click.IntRange(1, 64 << 20), default=MAX_BODY_BYTES, show_default=True,
              help="largest request body; more gets 413")
@click.option("--api-key", envvar=API_KEY_VARIABLE, default=None, show_envvar=True,
              help="require 'Authorization: Bearer KEY' on every API request")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes serving the same port (uvicorn's workers), each with its own models and engine")
@click.option("--engine-process/--engine-in-process", default=True, show_default=True,
              help="run the poem engine's lanes in processes of their own (on CPU one per lane), so their Python "
                   "shares no interpreter lock with the HTTP side or with each other")
def serve(host: str, port: int, model_dir: Path | None, faces_model_dir: Path | None, precision: str | None,
          provider: str, threads: int | None, max_rows: int, max_queued: int, request_timeout: float,
          max_body_bytes: int, api_key: str | None, workers: int, engine_process: bool) -> None:
    """Serve poems and faces over HTTP (JSON, Server-Sent Events, OpenAI completions) with a playground page at
    /, until Ctrl-C or SIGTERM, which finish the requests in flight first."""
    from genrt.cli_boundary import UserError, one_line
    missing = missing_packages()
    if missing:
        from genrt.extras import install_hint
        raise UserError(f"genrt serve needs {', '.join(missing)}: {install_hint('serve')}")
    bound_malloc_arenas()                                # genrt serve owns its process (genrt.allocator)
    retain_freed_memory()
    if workers > 1 and threads is None:
        from genrt.runtime import physical_cores
        threads = max(1, physical_cores() // workers)
    try:
        config = ServeConfig(None if model_dir is None else str(model_dir),
                             None if faces_model_dir is None else str(faces_model_dir), precision, provider, threads,
                             max_rows, max_queued, request_timeout, max_body_bytes, api_key,
                             engine_process=engine_process)
    except ValueError as e:
        raise UserError(str(e)) from None
    problem = address_problem(host, port)               # before the models load: a taken port fails at once
    if problem:
        raise UserError(problem)
    import uvicorn
    from genrt.serve.app import create_app
    from genrt.serve.service import load_models
    try:
        models = load_models(config)                    # a bad model directory: one line, before listening
    except Exception as e:
        message = one_line(e)
        if message is None:
            raise
        raise UserError(message) from None
    options = dict(host=host, port=port, log_config=log_config(), access_log=False,
                   timeout_graceful_shutdown=request_timeout + SHUTDOWN_GRACE)
    click.echo(f"genrt serve: http://{host}:{port}/ (the page; the API under /v1, its schema at /openapi.json)"
               f"{f', {workers} workers' if workers > 1 else ''}", err=True)
    click.echo(f"genrt serve: {models_line(models, config)}", err=True)
    with graceful_signals():
        if workers == 1:
            uvicorn.run(create_app(config, models), **options)
            return
        models.engine.close()                           # each worker loads its own
        del models
        os.environ.update(config.environment())        # what each worker's create_app() reads
        uvicorn.run("genrt.serve.app:create_app", factory=True, workers=workers, **options)
