"""genrt.serve.sse: event framing, and reading a stream back."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from genrt.serve import sse  # noqa: E402


def test_event_framing():
    assert sse.event({"text": "春\n江"}, "piece") == 'event: piece\ndata: {"text":"春\\n江"}\n\n'.encode()
    assert sse.event("[DONE]") == b"data: [DONE]\n\n"


def test_events_written_together_read_back_one_by_one():
    """A server sends the pieces that became certain in one step in one write: the events stay separate."""
    chunk = b"".join(sse.event({"text": t}, "piece") for t in ("春江", "潮水")) + sse.event({"poem": {}}, "done")
    assert sse.parse_events(chunk.decode()) == [("piece", {"text": "春江"}), ("piece", {"text": "潮水"}),
                                                ("done", {"poem": {}})]

