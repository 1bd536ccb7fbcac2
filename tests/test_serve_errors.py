"""genrt.serve.errors: one-line messages, types by status, malformed JSON apart from schema errors."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.exceptions import RequestValidationError  # noqa: E402

from genrt.serve.errors import ApiError, bad_value, validation_message  # noqa: E402


def test_api_error_body_is_one_line():
    e = ApiError(429, "queue\nfull", headers={"Retry-After": "1"})
    assert e.body() == {"error": {"message": "queue full", "type": "rate_limit_error"}}
    assert e.response().status_code == 429 and e.response().headers["retry-after"] == "1"
    assert bad_value(ValueError("top_k must be >= 0")).body()["error"]["type"] == "invalid_request_error"


def test_validation_messages():
    malformed = RequestValidationError([{"type": "json_invalid", "loc": ("body", 5), "msg": "JSON decode error",
                                         "ctx": {"error": "Expecting value"}}])
    assert validation_message(malformed) == (400, "malformed JSON (Expecting value)")
    missing = RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    assert validation_message(missing) == (400, "the request body must be a JSON object")
    schema = RequestValidationError([{"type": "int_type", "loc": ("body", "top_k"), "msg": "Input should be a valid "
                                                                                            "integer"},
                                     {"type": "extra_forbidden", "loc": ("body", "x"), "msg": "Extra inputs"}])
    assert validation_message(schema) == (422, "top_k: Input should be a valid integer; x: Extra inputs")
