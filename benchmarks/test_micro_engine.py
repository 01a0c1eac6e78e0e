"""Micro-benchmarks of the pass-through path: the OpenAI-compatible engine and the harness's own client, each
streaming one 8-chunk answer from the in-process mock upstream over real loopback sockets.

The figures include the mock's share (~30-50 µs a request); compare them with each other, not in isolation.

    .venv/bin/python -m pytest benchmarks/test_micro_engine.py --benchmark-columns=min,median,ops
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from router.bench.client import Target, send
from router.bench.mock import MockConfig, MockUpstream
from router.bench.stats import RequestRecord
from router.bench.workload import WorkItem
from router.engines.openai_http import OpenAIHTTPEngine
from router.types import ChatRequest, Completion, Message

pytestmark = pytest.mark.benchmark(group="passthrough")

BATCH = 50  # requests per timed call, so the loop's own start-up cost is amortised


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def mock_url(loop: asyncio.AbstractEventLoop) -> Iterator[str]:
    mock = MockUpstream(MockConfig(chunks=8))
    port = loop.run_until_complete(mock.start())
    yield f"http://127.0.0.1:{port}/v1"
    loop.run_until_complete(mock.aclose())


def test_engine_stream_8_chunks(benchmark, loop: asyncio.AbstractEventLoop, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    engine = OpenAIHTTPEngine("mock", base_url=mock_url, upstream_model="mock")
    loop.run_until_complete(engine.start())
    req = ChatRequest(model="mock", messages=[Message("user", "Classify the sentiment: great battery.")])

    async def batch() -> Completion:
        for _ in range(BATCH):
            out = await Completion.gather(engine.generate(req))
        return out

    out = benchmark(lambda: loop.run_until_complete(batch()))
    assert out.usage.completion_tokens == 8
    benchmark.extra_info["requests_per_call"] = BATCH
    loop.run_until_complete(engine.aclose())


def test_harness_client_stream_8_chunks(benchmark, loop: asyncio.AbstractEventLoop, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    target = Target(base_url=mock_url, model="mock", max_tokens=16)
    item = WorkItem("x", [{"role": "user", "content": "Classify the sentiment: great battery."}])
    body, headers = target.body(item), target.headers()

    async def batch() -> RequestRecord:
        async with aiohttp.ClientSession() as session:
            for i in range(BATCH):
                rec = await send(session, target, body, headers, RequestRecord(i, "x", 0.0))
        return rec

    rec = benchmark(lambda: loop.run_until_complete(batch()))
    assert rec.ok and rec.completion_tokens == 8
    benchmark.extra_info["requests_per_call"] = BATCH
