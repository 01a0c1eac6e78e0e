"""OpenAIHTTPEngine against the mock upstream on a free port: real sockets, real aiohttp, no HTTP mocks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from router.bench.mock import MockConfig, MockUpstream
from router.engines.base import Engine
from router.engines.openai_http import OpenAIHTTPEngine
from router.errors import (
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RouterError,
    Timeout,
    UpstreamError,
)
from router.types import ChatRequest, Chunk, Completion, Message, ResponseFormat, SamplingParams


@asynccontextmanager
async def upstream(**config: object) -> AsyncIterator[tuple[MockUpstream, OpenAIHTTPEngine]]:
    mock = MockUpstream(MockConfig(record=True, **config))  # type: ignore[arg-type]
    port = await mock.start()
    engine = OpenAIHTTPEngine("ext", base_url=f"http://127.0.0.1:{port}/v1", upstream_model="up-model", api_key="k1")
    await engine.start()
    try:
        yield mock, engine
    finally:
        await engine.aclose()
        await mock.aclose()


def request(**sampling: object) -> ChatRequest:
    return ChatRequest(
        model="ext",
        messages=[Message("system", "be brief"), Message("user", "hello", name="ann")],
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
        request_id="req-1",
    )


async def collect(engine: OpenAIHTTPEngine, req: ChatRequest) -> list[Chunk]:
    return [c async for c in engine.generate(req)]


async def test_is_an_engine() -> None:
    engine = OpenAIHTTPEngine("ext", base_url="http://127.0.0.1:1/v1", upstream_model="m")
    assert isinstance(engine, Engine)
    assert engine.capabilities.chat and engine.capabilities.json_schema


async def test_streams_deltas_then_finish_and_usage() -> None:
    async with upstream(chunks=4) as (_, engine):
        chunks = await collect(engine, request(max_tokens=4))
    assert [c.text for c in chunks[:-1]] == ["lorem ", "ipsum ", "dolor ", "sit "]
    last = chunks[-1]
    assert (last.text, last.finish_reason) == ("", "stop")
    assert last.usage is not None and last.usage.completion_tokens == 4 and last.usage.prompt_tokens > 0
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_maps_the_request_onto_the_openai_body() -> None:
    req = request(temperature=0.3, top_p=0.9, max_tokens=7, stop=("END", "\n\n"), seed=42)
    req.response_format = ResponseFormat(type="json_schema", json_schema={"type": "object"}, name="thing")
    async with upstream() as (mock, engine):
        await collect(engine, req)
        sent = mock.stats.received[-1]
    body, headers = sent["body"], sent["headers"]
    assert sent["path"] == "/v1/chat/completions"
    assert body == {
        "model": "up-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello", "name": "ann"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "stop": ["END", "\n\n"],
        "seed": 42,
        "response_format": {"type": "json_schema", "json_schema": {"name": "thing", "schema": {"type": "object"}}},
    }
    assert headers["authorization"] == "Bearer k1"
    assert headers["x-request-id"] == "req-1"


async def test_json_object_and_plain_text_formats() -> None:
    async with upstream() as (mock, engine):
        req = request()
        req.response_format = ResponseFormat(type="json_object")
        await collect(engine, req)
        assert mock.stats.received[-1]["body"]["response_format"] == {"type": "json_object"}
        await collect(engine, request())
        body = mock.stats.received[-1]["body"]
    assert "response_format" not in body and "max_tokens" not in body and "stop" not in body


async def test_yields_each_chunk_while_the_upstream_is_still_streaming() -> None:
    async with upstream(chunks=5, chunk_interval_s=0.1) as (mock, engine):
        stream = engine.generate(request())
        first = await anext(stream)
        assert first.text == "lorem "
        assert mock.stats.streams_active == 1  # not buffered until the end
        rest = [c async for c in stream]
    assert len(rest) == 5 and rest[-1].finish_reason == "stop"


async def test_closing_early_closes_the_upstream_response() -> None:
    async with upstream(chunks=50, chunk_interval_s=0.05) as (mock, engine):
        stream = engine.generate(request())
        assert (await anext(stream)).text
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            if mock.stats.streams_aborted:
                break
            await asyncio.sleep(0.01)
        assert mock.stats.streams_aborted == 1
        assert mock.stats.streams_active == 0


async def test_keeps_connections_alive() -> None:
    async with upstream() as (mock, engine):
        for _ in range(3):
            await Completion.gather(engine.generate(request()))
        assert mock.stats.connections == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (422, InvalidRequest),
        (404, NotFound),
        (413, PayloadTooLarge),
        (429, RateLimited),
        (503, Overloaded),
        (529, Overloaded),
        (500, UpstreamError),
        (502, UpstreamError),
        (401, UpstreamError),  # our upstream credentials are wrong, not the caller's request
        (504, Timeout),
    ],
)
async def test_upstream_http_errors(status: int, error: type[RouterError]) -> None:
    async with upstream() as (_, engine):
        engine.upstream_model = f"status-{status}"  # the mock's model name picks the fault
        with pytest.raises(error) as info:
            await collect(engine, request())
    exc = info.value
    assert type(exc) is error
    # The upstream's own message is never forwarded (it may echo credentials): its status is, in our words.
    assert "mock fault" not in exc.message and str(status) in exc.message
    if status in (429, 503, 529):
        assert exc.retry_after == pytest.approx(1.5)  # retry-after-ms wins over retry-after


@pytest.mark.parametrize("fault", ["midstream-error", "truncate", "no-finish"])
async def test_broken_streams(fault: str) -> None:
    async with upstream(chunks=3) as (_, engine):
        engine.upstream_model = fault
        got: list[Chunk] = []
        with pytest.raises(UpstreamError):
            async for c in engine.generate(request()):
                got.append(c)
    if fault != "no-finish":
        assert got and got[0].text == "lorem "  # what arrived before the failure was passed on


async def test_unreachable_upstream() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = OpenAIHTTPEngine("ext", base_url=f"http://127.0.0.1:{port}/v1", upstream_model="m")
    await engine.start()
    try:
        assert await engine.health() is False
        with pytest.raises(UpstreamError, match="cannot reach"):
            await collect(engine, request())
    finally:
        await engine.aclose()


async def test_deadline_becomes_timeout() -> None:
    async with upstream() as (_, engine):
        engine.upstream_model = "stall"
        req = request()
        now = asyncio.get_running_loop().time()
        req.deadline = now + 0.2
        with pytest.raises(Timeout):
            await collect(engine, req)
        req.deadline = now - 1
        with pytest.raises(Timeout):
            await collect(engine, req)


async def test_health() -> None:
    async with upstream() as (_, engine):
        assert await engine.health() is True
    assert await engine.health() is False  # closed
