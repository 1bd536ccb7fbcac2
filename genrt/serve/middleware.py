"""Plain ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed answers and hide disconnects):
the request log line and metrics, the API key, the body size limit."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genrt.serve.errors import ApiError
from genrt.serve.sse import STREAM_END

log = logging.getLogger("genrt.serve")

PUBLIC_PATHS = ("/", "/healthz", "/favicon.ico")          # the page, its files and the probe need no key
PUBLIC_PREFIXES = ("/static/",)
CLIENT_CLOSED = 499                                       # nginx's status for a client that left first


class RequestLog:
    """One log line per request (client, method, path, status, bytes, seconds) and the HTTP metrics."""

    def __init__(self, app: ASGIApp, endpoint_of: Callable[[str], str],
                 observe: Callable[[str, int, float, str | None], None]):
        self.app, self.endpoint_of, self.observe = app, endpoint_of, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, sent = time.perf_counter(), 500, 0

        async def send_counted(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)
        try:
            await self.app(scope, receive, send_counted)
        finally:
            seconds = time.perf_counter() - start
            path = scope.get("path", "")
            ended = scope.get(STREAM_END)                  # a stream that had started (200) and ended otherwise
            self.observe(self.endpoint_of(path), status, seconds, ended)
            client = scope.get("client") or ("-", 0)
            log.info('%s "%s %s" %d%s %dB %.3fs', client[0], scope.get("method", "-"), path, status,
                     f" (stream ended: {ended})" if ended else "", sent, seconds)


class ApiKey:
    """With a key set, every request outside the public paths needs `Authorization: Bearer KEY` (else 401)."""

    def __init__(self, app: ASGIApp, key: str | None):
        self.app, self.key = app, key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.key is not None and not self.public(scope["path"]):
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self.key):
                error = ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                 headers={"WWW-Authenticate": "Bearer"})
                return await error.response()(scope, receive, send)
        await self.app(scope, receive, send)

    @staticmethod
    def public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BodyLimit:
    """413 for a body over `limit` bytes: at once when Content-Length says so, else as soon as the bytes read
    pass the limit (a chunked upload), before anything is parsed. 408 for a body that has not all arrived within
    `timeout` seconds of the request (a client that stalls mid-upload would otherwise hold its connection, and a
    graceful shutdown, without end); once the body is in, waiting for a disconnect has no deadline."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float | None = None):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self.too_large().response()(scope, receive, send)
        seen, complete = 0, False
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        async def receive_counted() -> Message:
            nonlocal seen, complete
            if complete or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    raise HTTPException(408, f"the request body did not all arrive within {self.timeout:g} s") \
                        from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.limit:
                    # FastAPI passes an HTTPException raised while reading the body on to the error handlers
                    raise HTTPException(413, self.too_large().message)
            return message
        await self.app(scope, receive_counted, send)

    def too_large(self) -> ApiError:
        return ApiError(413, f"the request body is over the limit of {self.limit:,} bytes")
