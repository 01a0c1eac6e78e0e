"""A fast mock of an OpenAI- and Anthropic-compatible upstream, for measuring what a gateway adds.

A raw asyncio Protocol speaking just enough HTTP/1.1 (keep-alive, pipelining, Content-Length bodies, chunked
responses): no framework sits in its path, so it stays far cheaper per request than anything measured against it.
With no latency and no pacing the whole response leaves in one write straight from `data_received`.

    GET  /v1/models                   one model list
    POST /v1/chat/completions         OpenAI, streaming (SSE, usage when asked) or not
    POST /v1/messages                 Anthropic, streaming (named events) or not

Behaviour per request, overriding the defaults: headers `x-mock-latency-ms` (before the first byte),
`x-mock-chunks` (content chunks), `x-mock-chunk-interval-ms` (pacing). Faults are picked by the model name
(or an `x-mock-fault` header), as in TensorZero's dummy provider:
    status-NNN        answer NNN with an error body in the API's format (429/503/529 carry retry-after)
    stall             never answer
    midstream-error   one chunk, then an in-band error event
    truncate          one chunk, then close the connection
    no-finish         chunks and [DONE] but no finish_reason
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


@dataclass(slots=True)
class MockConfig:
    latency_s: float = 0.0
    chunks: int = 8
    chunk_interval_s: float = 0.0
    record: bool = False  # keep the last requests (tests); off on the fast path


@dataclass(slots=True)
class MockStats:
    requests: int = 0
    streams_active: int = 0  # paced responses still being written
    streams_aborted: int = 0  # connections lost while a paced response was being written
    connections: int = 0
    received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=256))


@dataclass(slots=True)
class _Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


class MockUpstream:
    """The shared state of one mock server: configuration, statistics, pre-rendered responses."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self.stats = MockStats()
        self.server: asyncio.Server | None = None
        self.open: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=1024)
        return self.server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.open):
                conn._close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            self.server = None

    # -- rendering -------------------------------------------------------------------------------------------

    def openai_stream(self, model: str, n: int, include_usage: bool, prompt_tokens: int, finish: bool) -> list[bytes]:
        """The SSE events of one streamed chat completion (each still to be framed as an HTTP chunk)."""
        head = b'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":%d,"model":%s,"choices":' % (
            int(time.time()),
            orjson.dumps(model),
        )
        events = [head + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
        for i in range(n):
            text = orjson.dumps(_WORDS[i % len(_WORDS)] + " ")
            events.append(head + b'[{"index":0,"delta":{"content":' + text + b'},"finish_reason":null}]}\n\n')
        if finish:
            events.append(head + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        if include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            events.append(head + b'[],"usage":' + orjson.dumps(usage) + b"}\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    def openai_json(self, model: str, n: int, prompt_tokens: int) -> bytes:
        text = "".join(_WORDS[i % len(_WORDS)] + " " for i in range(n))
        return orjson.dumps(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
            }
        )

    def anthropic_stream(self, model: str, n: int, prompt_tokens: int) -> list[bytes]:
        def ev(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        message = {
            "id": "msg_mock",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
        }
        events = [
            ev("message_start", {"type": "message_start", "message": message}),
            ev(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ev("ping", {"type": "ping"}),
        ]
        for i in range(n):
            delta = {"type": "text_delta", "text": _WORDS[i % len(_WORDS)] + " "}
            events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events += [
            ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": n},
                },
            ),
            ev("message_stop", {"type": "message_stop"}),
        ]
        return events

    def anthropic_json(self, model: str, n: int, prompt_tokens: int) -> bytes:
        text = "".join(_WORDS[i % len(_WORDS)] + " " for i in range(n))
        return orjson.dumps(
            {
                "id": "msg_mock",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": n},
            }
        )


def _response_head(status: int, content_type: bytes, keep_alive: bool, length: int | None, extra: bytes = b"") -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    conn = b"" if keep_alive else b"Connection: close\r\n"
    reason = _REASONS.get(status, "Status").encode()
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s%s%s\r\n" % (status, reason, content_type, framing, conn, extra)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"
_JSON = b"application/json"
_SSE = b"text/event-stream"


class _Connection(asyncio.Protocol):
    def __init__(self, mock: MockUpstream) -> None:
        self.mock = mock
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a delayed response is in progress; later pipelined requests wait for it
        self.closed = False
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.mock.stats.connections += 1
        self.mock.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.mock.open.discard(self)
        if self.streaming:
            self.streaming = False
            self.mock.stats.streams_active -= 1
            self.mock.stats.streams_aborted += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._drain_requests()

    def _drain_requests(self) -> None:
        while not self.busy and not self.closed:
            req = self._parse()
            if req is None:
                return
            self._dispatch(req)

    def _parse(self) -> _Request | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail(431, b"request head too large")
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        try:
            method, path, version = lines[0].split(b" ", 2)
        except ValueError:
            self._fail(400, b"bad request line")
            return None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self._fail(411, b"send a Content-Length body")
            return None
        length = int(headers.get(b"content-length", b"0"))
        if length > _MAX_BODY:
            self._fail(413, b"body too large")
            return None
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        conn = headers.get(b"connection", b"").lower()
        keep_alive = conn != b"close" if version == b"HTTP/1.1" else conn == b"keep-alive"
        return _Request(method, path.split(b"?", 1)[0], headers, body, keep_alive)

    def _fail(self, status: int, message: bytes) -> None:
        body = b'{"error":{"message":"%s","type":"invalid_request_error"}}' % message
        self._write(_response_head(status, _JSON, False, len(body)) + body)
        self._close()

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- routing ---------------------------------------------------------------------------------------------

    def _dispatch(self, req: _Request) -> None:
        mock = self.mock
        mock.stats.requests += 1
        if req.path in (b"/v1/chat/completions", b"/chat/completions") and req.method == b"POST":
            self._generate(req, "openai")
        elif req.path in (b"/v1/messages", b"/messages") and req.method == b"POST":
            self._generate(req, "anthropic")
        elif req.path in (b"/v1/models", b"/models") and req.method == b"GET":
            body = b'{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"mock"}]}'
            self._finish(req, _response_head(200, _JSON, req.keep_alive, len(body)) + body)
        elif req.path in (b"/health", b"/healthz"):
            self._finish(req, _response_head(200, _JSON, req.keep_alive, 2) + b"{}")
        else:
            body = b'{"error":{"message":"no such endpoint","type":"invalid_request_error","code":"unknown_url"}}'
            self._finish(req, _response_head(404, _JSON, req.keep_alive, len(body)) + body)

    def _finish(self, req: _Request, data: bytes) -> None:
        self._write(data)
        if not req.keep_alive:
            self._close()

    def _generate(self, req: _Request, api: str) -> None:
        mock, cfg = self.mock, self.mock.config
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            self._error(req, api, 400, "the body is not valid JSON")
            return
        if cfg.record:
            mock.stats.received.append(
                {
                    "path": req.path.decode(),
                    "headers": {k.decode(): v.decode() for k, v in req.headers.items()},
                    "body": body,
                }
            )
        h = req.headers
        model = str(body.get("model", "mock"))
        fault = h.get(b"x-mock-fault", b"").decode() or model
        latency = float(h[b"x-mock-latency-ms"]) / 1000 if b"x-mock-latency-ms" in h else cfg.latency_s
        n = int(h[b"x-mock-chunks"]) if b"x-mock-chunks" in h else cfg.chunks
        interval = (
            float(h[b"x-mock-chunk-interval-ms"]) / 1000 if b"x-mock-chunk-interval-ms" in h else cfg.chunk_interval_s
        )
        if fault.startswith("status-"):
            self._error(req, api, int(fault[7:]), f"mock fault {fault}")
            return
        if fault == "stall":
            self.busy = True  # hold the connection; never answer
            return
        prompt_tokens = max(1, len(req.body) // 4)
        stream = bool(body.get("stream"))
        if not stream:
            payload = (mock.openai_json if api == "openai" else mock.anthropic_json)(model, n, prompt_tokens)
            data = _response_head(200, _JSON, req.keep_alive, len(payload)) + payload
            if latency > 0:
                self._later(req, latency, [data], 0.0, end=b"")
            else:
                self._finish(req, data)
            return
        if api == "openai":
            options = body.get("stream_options") or {}
            events = mock.openai_stream(
                model, n, bool(options.get("include_usage")), prompt_tokens, finish=fault != "no-finish"
            )
        else:
            events = mock.anthropic_stream(model, n, prompt_tokens)
        if fault in ("midstream-error", "truncate"):
            head = _response_head(200, _SSE, req.keep_alive, None)
            self._write(head + _chunk(events[0]) + _chunk(events[1]))
            if fault == "truncate":
                self._close()
            else:
                err = {"error": {"message": "mock mid-stream failure", "type": "server_error"}}
                self._write(_chunk(b"data: " + orjson.dumps(err) + b"\n\n") + _chunk(b"data: [DONE]\n\n") + _LAST_CHUNK)
            return
        head = _response_head(200, _SSE, req.keep_alive, None)
        if latency <= 0 and interval <= 0:
            self._finish(req, head + b"".join(_chunk(e) for e in events) + _LAST_CHUNK)
        else:
            self._later(req, latency, [head + _chunk(events[0])] + [_chunk(e) for e in events[1:]], interval)

    def _error(self, req: _Request, api: str, status: int, message: str) -> None:
        if api == "anthropic":
            err = {"type": "error", "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"), "message": message}}
        else:
            err = {"error": {"message": message, "type": "mock_error", "param": None, "code": str(status)}}
        payload = orjson.dumps(err)
        extra = b"retry-after: 2\r\nretry-after-ms: 1500\r\n" if status in (429, 503, 529) else b""
        self._finish(req, _response_head(status, _JSON, req.keep_alive, len(payload), extra) + payload)

    def _later(
        self, req: _Request, latency: float, parts: list[bytes], interval: float, end: bytes = _LAST_CHUNK
    ) -> None:
        """Send `parts` after `latency`, `interval` apart, then `end`; requests behind this one wait."""
        self.busy = True
        self.streaming = True
        self.mock.stats.streams_active += 1
        task = asyncio.get_running_loop().create_task(self._paced(req, latency, parts, interval, end))
        self.mock.tasks.add(task)
        task.add_done_callback(self.mock.tasks.discard)

    async def _paced(self, req: _Request, latency: float, parts: list[bytes], interval: float, end: bytes) -> None:
        if latency > 0:
            await asyncio.sleep(latency)
        for i, part in enumerate(parts):
            if self.closed:
                return
            if i > 1 and interval > 0:  # the head and role chunk go together, then content is paced
                await asyncio.sleep(interval)
            self._write(part)
        if self.closed:
            return
        self._write(end)
        self.streaming = False
        self.mock.stats.streams_active -= 1
        self.busy = False
        if not req.keep_alive:
            self._close()
        elif self.buf:
            self._drain_requests()


async def serve_forever(config: MockConfig, host: str, port: int) -> None:
    mock = MockUpstream(config)
    bound = await mock.start(host, port)
    # The start-up line (tests and benchmarks read the address from it).
    sys.stdout.write(
        f"mock upstream on http://{host}:{bound}/v1  latency {config.latency_s * 1e3:g} ms  "
        f"chunks {config.chunks}  interval {config.chunk_interval_s * 1e3:g} ms\n"
    )
    sys.stdout.flush()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mock_upstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before the first byte (default 0)")
    p.add_argument("--chunks", type=int, default=8, help="content chunks per answer (default 8)")
    p.add_argument("--chunk-interval-ms", type=float, default=0.0, help="pause between content chunks (default 0)")
    args = p.parse_args(argv)
    config = MockConfig(
        latency_s=args.latency_ms / 1e3, chunks=args.chunks, chunk_interval_s=args.chunk_interval_ms / 1e3
    )
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    with contextlib.suppress(KeyboardInterrupt):
        (uvloop.run if uvloop is not None else asyncio.run)(serve_forever(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
