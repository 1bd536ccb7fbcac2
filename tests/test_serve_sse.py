"""genrt.serve.sse: event framing and the deadline on a stream of pieces."""
from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi")

from genrt.serve import sse  # noqa: E402
from genrt.serve.errors import ApiError  # noqa: E402


def test_event_framing():
    assert sse.event({"text": "春\n江"}, "piece") == 'event: piece\ndata: {"text":"春\\n江"}\n\n'.encode()
    assert sse.event("[DONE]") == b"data: [DONE]\n\n"


def test_within_passes_pieces_then_times_out():
    async def slow():
        yield "a"
        await asyncio.sleep(5)
        yield "b"

    async def run():
        got = []
        with pytest.raises(ApiError) as e:
            async for piece in sse.within(time.monotonic() + 0.2, slow(), lambda: ApiError(503, "late")):
                got.append(piece)
        return got, e.value
    got, error = asyncio.run(run())
    assert got == ["a"] and error.status == 503


def test_within_ends_with_the_stream():
    async def two():
        yield "a"
        yield "b"

    async def run():
        return [p async for p in sse.within(time.monotonic() + 5, two(), lambda: ApiError(503, "late"))]
    assert asyncio.run(run()) == ["a", "b"]
