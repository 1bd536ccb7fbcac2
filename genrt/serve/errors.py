"""Every error a client sees: JSON `{"error": {"message": ..., "type": ...}}`, one line, never a traceback.

    400 invalid_request_error   malformed JSON, or a value genrt refuses (the same one-line messages as the CLI)
    401 authentication_error    --api-key is set and the request lacks `Authorization: Bearer KEY`
    404 not_found_error         no such path or model
    405 invalid_request_error   a path without that method
    413 request_too_large       the body is over the size limit
    415 invalid_request_error   the body was not sent as JSON (Content-Type: application/json)
    422 invalid_request_error   the body does not fit the request schema (a missing field, a wrong type)
    429 rate_limit_error        the queue is full: try again after Retry-After seconds
    503 service_unavailable     the models are still loading, an engine process stopped and another is starting,
                                or the service is shutting down
    503 timeout_error           the request took longer than the per-request timeout
    500 internal_error          anything else (logged in full on the server, one generic line to the client)
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                405: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error",
                422: "invalid_request_error",
                429: "rate_limit_error", 503: "service_unavailable", 500: "internal_error"}


class ApiError(Exception):
    """An error answer: status, one-line message, type (by status unless given), extra headers."""

    def __init__(self, status: int, message: str, type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, " ".join(str(message).split())
        self.type = type or STATUS_TYPES.get(status, "error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_value(e: Exception) -> ApiError:
    """genrt's own ValueError (options, prompts, poems) as a 400 with the CLI's one-line message."""
    return ApiError(400, str(e) or type(e).__name__)


BODY_NOT_PARSED = "There was an error parsing the body"


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and
                                                media_type.endswith("+json"))


def validation_message(error: RequestValidationError) -> tuple[int, str]:
    """(status, one line) for a body FastAPI could not parse (400) or that does not fit the schema (422)."""
    problems, malformed = [], False
    for item in error.errors():
        if item.get("type") == "json_invalid":
            malformed = True
            problems.append(f"malformed JSON ({item.get('ctx', {}).get('error', 'cannot parse')})")
            continue
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        message = item.get("msg", "invalid")
        if item.get("type") == "missing" and not where:
            malformed, message = True, "the request body must be a JSON object"
        problems.append(f"{where}: {message}" if where else message)
    return (400 if malformed else 422), "; ".join(dict.fromkeys(problems)) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, e: RequestValidationError) -> JSONResponse:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if isinstance(e.body, (bytes, bytearray)) and not is_json(media):   # FastAPI did not read it as JSON
            return ApiError(415, f"send the request body as JSON with 'Content-Type: application/json' (got "
                                 f"{media or 'no Content-Type'})").response()
        status, message = validation_message(e)
        return ApiError(status, message).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such path: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        if e.status_code == 400 and message == BODY_NOT_PARSED:              # FastAPI's words name no cause
            message = ("the request body is not JSON text in UTF-8" if isinstance(e.__cause__, UnicodeDecodeError)
                       else "malformed JSON (the body is nested too deeply)" if isinstance(e.__cause__, RecursionError)
                       else "malformed JSON (the body could not be parsed)")
        return ApiError(e.status_code, message, headers=getattr(e, "headers", None)).response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        # Starlette re-raises it after this answer, and uvicorn logs the traceback on the server
        return ApiError(500, "internal error (logged on the server)").response()
