"""SSE framing byte for byte, and a client that disconnects mid-stream stops the engine within one token."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from router.app import REGISTRY
from tests.conftest import MODEL

pytestmark = pytest.mark.model


async def _post(base_url: str, body: dict) -> tuple[CIMultiDict, bytes]:
    async with aiohttp.ClientSession() as session, session.post(base_url + "/v1/chat/completions", json=body) as r:
        return r.headers.copy(), await r.read()


def test_sse_framing_byte_for_byte(base_url: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers, raw = asyncio.run(_post(base_url, body))
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["x-request-id"]
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    first = chunks[0]
    cid, created = first["id"], first["created"]
    texts = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]

    def chunk(delta: dict, finish: str | None) -> dict:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    expected = [chunk({"role": "assistant", "content": ""}, None)]
    expected += [chunk({"content": t}, None) for t in texts]
    expected.append(chunk({}, "length"))
    usage = {"prompt_tokens": chunks[-1]["usage"]["prompt_tokens"], "completion_tokens": 6}
    usage["total_tokens"] = usage["prompt_tokens"] + 6
    expected.append(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [],
            "usage": usage,
        }
    )
    wire = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in expected) + b"data: [DONE]\n\n"
    assert raw == wire
    assert cid == "chatcmpl-" + headers["x-request-id"]


async def _read_some_then_disconnect(base_url: str, n_events: int) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    reader, writer = await asyncio.open_connection(*base_url.removeprefix("http://").split(":"))
    payload = orjson.dumps(body)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    seen = 0
    while seen < n_events:
        line = await reader.readline()
        assert line, "server closed the stream early"
        if line.startswith(b"data: "):
            seen += 1
    writer.transport.abort()  # the client vanishes, no goodbye


def test_disconnect_stops_generation_within_one_token(router_server) -> None:
    engine = router_server.app[REGISTRY].engines[MODEL]
    before = (engine.stats.cancelled, engine.stats.tokens_generated)
    asyncio.run(_read_some_then_disconnect(router_server.base_url, n_events=4))
    deadline = time.monotonic() + 10
    while engine.stats.cancelled == before[0] or engine.stats.active:
        assert time.monotonic() < deadline, "generation did not stop after the client left"
        time.sleep(0.01)
    assert engine.stats.last_cancel_overrun <= 1
    generated = engine.stats.tokens_generated - before[1]
    assert generated < 60, f"{generated} tokens generated for a request abandoned after 3"
    # The engine is free again: the next request is served at once.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    _, raw = asyncio.run(_post(router_server.base_url, body))
    assert b'"completion_tokens":3' in raw
