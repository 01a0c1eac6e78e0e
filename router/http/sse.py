"""Server-sent events framing."""

from __future__ import annotations

import orjson


def event(data: bytes, name: str | None = None) -> bytes:
    """One SSE event. `data` is a single line of JSON (orjson never emits raw newlines)."""
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def json_event(obj: object, name: str | None = None) -> bytes:
    return event(orjson.dumps(obj), name)


DONE = b"data: [DONE]\n\n"

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}
