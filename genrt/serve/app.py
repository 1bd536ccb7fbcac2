"""The ASGI app: create_app(config, models) -> a FastAPI app (uvicorn runs it).

    uvicorn --factory genrt.serve.app:create_app        # settings from GENRT_SERVE_CONFIG / GENRT_API_KEY

Layers, outermost first: the request log and metrics, the API key, the body size limit, then FastAPI's routing,
validation and error handlers (genrt.serve.errors). The models load in a thread after startup (/healthz answers
503 until they are in); shutdown stops accepting, lets the requests in flight finish, then drains the engine.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI

from genrt import __version__
from genrt.serve import completions, routes
from genrt.serve.config import ServeConfig
from genrt.serve.errors import install_error_handlers
from genrt.serve.metrics import Metrics
from genrt.serve.middleware import ApiKey, BodyLimit, RequestLog
from genrt.serve.service import Models, Service

DESCRIPTION = ("Chinese poems (a Transformer) and faces (a DCGAN), run with onnxruntime on this machine. Errors are "
               '`{"error": {"message", "type"}}`; with an API key set, send `Authorization: Bearer KEY`.')


def create_app(config: ServeConfig | None = None, models: Models | Callable[[], Models] | None = None) -> FastAPI:
    """`models`: already loaded (ready at once), a loader called in a thread at startup, or None: genrt's loaders
    with `config`'s model settings. `config` None: from the environment (ServeConfig.from_environment)."""
    config = config or ServeConfig.from_environment()
    service = Service(config, models)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="genrt", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)   # the docs pages load their scripts from a CDN; the schema stays
    app.state.service = service
    app.state.metrics = metrics = Metrics(service.engine_stats)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(completions.router)
    app.mount("/static", routes.PageFiles(directory=routes.STATIC), name="static")
    paths = {route.path for router in (routes.router, completions.router) for route in router.routes}
    paths.add(app.openapi_url)

    def endpoint_of(path: str) -> str:
        """A metrics label from a bounded set: the route, /static, or other."""
        if path.startswith("/static/"):
            return "/static"
        if path.startswith("/v1/models/"):
            return "/v1/models/{model_id}"                 # one label, whatever the id asked for
        return path if path in paths else "other"
    # added innermost first
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.request_timeout)
    app.add_middleware(ApiKey, key=config.api_key)
    app.add_middleware(RequestLog, endpoint_of=endpoint_of, observe=metrics.observe)
    return app
