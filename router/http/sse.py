"""Server-sent events framing."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web


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


class CoalescingResponse(web.StreamResponse):
    """An SSE response whose writes made in one event-loop iteration leave in one send.

    An upstream read usually carries several chunks; the handler encodes and `write`s each, and a plain
    StreamResponse sends each at once (one syscall, one wake-up of the client each). Here `write` only queues;
    a callback at the end of the loop iteration sends the queue as one chunk. A queue past `limit` bytes is sent
    at once, and a send that must wait for the client (backpressure) makes the next `write` wait with it."""

    def __init__(self, *, headers: dict[str, str], limit: int = 16 * 1024) -> None:
        super().__init__(headers=headers)
        self._queue: list[bytes] = []
        self._queued = 0
        self._limit = limit
        self._scheduled = False
        self._sending: asyncio.Task[None] | None = None
        self._error: Exception | None = None  # a send that failed (the client left): raised by the next write

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending is not None:
            await asyncio.shield(self._sending)  # backpressure: the last send still waits for the client
        if self._error is not None:
            raise self._error
        self._queue.append(bytes(data))
        self._queued += len(data)
        if self._queued >= self._limit:
            await self._send()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._scheduled = False
        if self._queue and self._sending is None and self._error is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_in_background())

    async def _send_in_background(self) -> None:
        try:
            await self._send()
        except Exception as exc:
            self._error = exc
        finally:
            self._sending = None

    async def _send(self) -> None:
        while self._queue:
            data = b"".join(self._queue)
            self._queue.clear()
            self._queued = 0
            await super().write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._sending is not None:
            await asyncio.shield(self._sending)
        if self._error is not None:
            raise self._error
        # The last queued bytes leave with the terminating chunk: one send.
        tail = b"".join([*self._queue, data])
        self._queue.clear()
        self._queued = 0
        await super().write_eof(tail)
