"""Server-Sent Events: framing, and the event stream of one poem from the engine.

    event: piece            one per piece as it becomes certain: {"text": "春江", "tones": "平平"}
    event: done             the whole poem: {"poem": {...}, "seed": ...}
    event: error            instead of done: {"error": {"message", "type"}} (the answer's status is already 200)
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

from starlette.responses import StreamingResponse

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}     # no proxy may buffer the pieces
# Pieces that settle within this long of the last write go out together in the next one (the end at once): under
# load a lane steps every few milliseconds, and a write per step and stream costs the server more than a reader sees.
STREAM_INTERVAL_S = 0.05


def event(data: Any, name: str | None = None) -> bytes:
    """One SSE event; `data` is JSON-encoded on one line (a string is sent as is, e.g. OpenAI's [DONE])."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()


def parse_events(text: str) -> list[tuple[str | None, Any]]:
    """A whole /v1/poems event stream as a client reads it -> [(event name, decoded JSON data)], in order."""
    events = []
    for block in text.strip().split("\n\n"):
        name = data = None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        events.append((name, data))
    return events


STREAM_END = "genrt.stream_end"        # scope key: how a stream that had started ended, when not with its answer


def note_stream_end(scope: dict, kind: str) -> None:
    """Record in the request's scope that its stream ended with an error event of `kind` (timeout_error, ...) or
    because the client left ("client_closed"): the status was already 200, so the request log and the metrics
    read it from here (the first note stands)."""
    scope.setdefault(STREAM_END, kind)


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=HEADERS)

