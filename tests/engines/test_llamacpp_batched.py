"""The batched llama.cpp engine beyond the shared contract: bounded admission, deadlines in the queue, per-token
logprobs, prefix reuse, shutdown, and the 503 / Retry-After that bounded admission turns into over HTTP."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from router.config import Settings
from router.errors import EngineError, Overloaded, Timeout
from router.types import Completion
from tests.engines.conftest import chat, local_settings

pytest.importorskip("llama_cpp")

from router.engines.llamacpp_batched import BatchedLlamaCppEngine

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

STORY = "Write a long story about a dragon who learns to fly."
SYSTEM = (
    "You are a careful assistant for a travel agency. Answer in one short sentence, in plain English, "
    "without lists, and never invent prices or dates you were not given."
)


async def started(**over: object) -> BatchedLlamaCppEngine:
    engine = BatchedLlamaCppEngine(local_settings("smollm2", **over))
    await engine.start()
    return engine


@pytest_asyncio.fixture(loop_scope="session")
async def one_slot() -> AsyncIterator[BatchedLlamaCppEngine]:
    """One slot, a waiting room of one request."""
    engine = await started(n_parallel=1, max_queue_requests=1)
    yield engine
    await engine.aclose()


async def test_queue_bound_by_requests(one_slot: BatchedLlamaCppEngine) -> None:
    running = one_slot.generate(chat(STORY, max_tokens=200))
    await anext(running)
    waiting = asyncio.ensure_future(Completion.gather(one_slot.generate(chat("Hi", max_tokens=2))))
    await asyncio.sleep(0.05)
    assert one_slot.stats.queued == 1
    with pytest.raises(Overloaded) as refused:
        await anext(one_slot.generate(chat("Hello", max_tokens=2)))
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
    assert one_slot.stats.rejected == 1
    await running.aclose()  # its slot goes straight to the waiting request
    assert (await waiting).usage.completion_tokens == 2
    assert one_slot.stats.queued == 0 and one_slot.stats.queued_tokens == 0


async def test_queue_bound_by_prompt_tokens() -> None:
    engine = await started(n_parallel=1, max_queue_requests=8, max_queue_tokens=60)
    try:
        size = engine.count_prompt_tokens(chat("Hi"))
        assert 30 < size <= 60  # one waiting prompt fits, two do not
        running = engine.generate(chat(STORY, max_tokens=200))
        await anext(running)
        waiting = asyncio.ensure_future(Completion.gather(engine.generate(chat("Hi", max_tokens=2))))
        await asyncio.sleep(0.05)
        assert engine.stats.queued_tokens == size
        with pytest.raises(Overloaded):
            await anext(engine.generate(chat("Hi", max_tokens=2)))
        await running.aclose()
        await waiting
    finally:
        await engine.aclose()


async def test_deadline_expiring_in_the_queue_removes_the_request(one_slot: BatchedLlamaCppEngine) -> None:
    running = one_slot.generate(chat(STORY, max_tokens=200))
    await anext(running)
    late = chat("Hi", max_tokens=2)
    late.deadline = asyncio.get_running_loop().time() + 0.2
    started_at = time.monotonic()
    with pytest.raises(Timeout, match="waiting for a free slot"):
        await Completion.gather(one_slot.generate(late))
    assert time.monotonic() - started_at < 2
    assert one_slot.stats.expired == 1 and one_slot.stats.queued == 0
    # The running request was not disturbed.
    assert (await anext(running)).text is not None
    await running.aclose()


async def test_client_leaving_the_queue_frees_its_place(one_slot: BatchedLlamaCppEngine) -> None:
    running = one_slot.generate(chat(STORY, max_tokens=200))
    await anext(running)
    waiting = asyncio.ensure_future(Completion.gather(one_slot.generate(chat("Hi", max_tokens=2))))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert one_slot.stats.queued == 0 and one_slot.stats.withdrawn == 1
    await running.aclose()


async def test_cancel_stops_within_one_token() -> None:
    engine = await started(n_parallel=2)
    try:
        stream = engine.generate(chat(STORY, max_tokens=200))
        for _ in range(3):
            await anext(stream)
        await stream.aclose()
        deadline = time.monotonic() + 5
        while engine.stats.active:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert engine.stats.cancelled == 1
        assert engine.stats.last_cancel_overrun <= 1
        assert engine.stats.tokens_generated < 10
    finally:
        await engine.aclose()


async def test_logprobs_per_streamed_token() -> None:
    engine = await started(n_parallel=2)
    try:
        chunks = [c async for c in engine.generate(chat(STORY, max_tokens=6, logprobs=True))]
        *tokens, last = chunks
        assert len(tokens) == 6 == last.usage.completion_tokens  # type: ignore[union-attr]
        assert all(c.logprob is not None and -50 < c.logprob <= 0 for c in tokens)
        # Greedy picks the most likely token: its probability is at least 1/vocab.
        assert all(c.logprob >= -math.log(49152) for c in tokens)  # type: ignore[operator]
    finally:
        await engine.aclose()


async def test_prefix_reuse_copies_the_system_prompt() -> None:
    plain = await started(n_parallel=2, prefix_reuse=False)
    reuse = await started(n_parallel=2, prefix_reuse=True)
    try:
        questions = ["Where is Rome?", "Is Paris far from Lyon?", "Name a beach in Spain."]
        for q in questions:
            request = chat(q, max_tokens=10, system=SYSTEM)
            a = await Completion.gather(plain.generate(request))
            b = await Completion.gather(reuse.generate(chat(q, max_tokens=10, system=SYSTEM)))
            assert b.text == a.text and b.usage == a.usage
        assert reuse.stats.prefix_hits == len(questions) - 1
        assert reuse.stats.prefix_tokens_reused >= 2 * 30
        assert reuse.stats.prompt_tokens_computed < plain.stats.prompt_tokens_computed
    finally:
        await plain.aclose()
        await reuse.aclose()


async def test_aclose_fails_requests_in_flight() -> None:
    engine = await started(n_parallel=1, max_queue_requests=2)
    running = engine.generate(chat(STORY, max_tokens=200))
    await anext(running)
    waiting = asyncio.ensure_future(Completion.gather(engine.generate(chat("Hi"))))
    await asyncio.sleep(0.05)
    await engine.aclose()
    with pytest.raises(EngineError):
        await waiting
    with pytest.raises(EngineError):
        async for _ in running:
            pass
    assert not await engine.health()
    with pytest.raises(EngineError):
        await anext(engine.generate(chat("Hi")))


async def test_full_engine_answers_503_with_retry_after_over_http() -> None:
    from tests.support.server import ServerThread

    settings = Settings(models=[local_settings("tiny", n_parallel=1, max_queue_requests=0)])
    server = await asyncio.to_thread(ServerThread(settings).start)
    body = {"model": "tiny", "messages": [{"role": "user", "content": STORY}], "max_tokens": 200, "stream": True}
    try:
        async with (
            aiohttp.ClientSession(base_url=server.base_url) as http,
            http.post("/v1/chat/completions", json=body) as first,
        ):
            assert first.status == 200
            await first.content.readline()  # the stream is running: the only slot is taken
            async with http.post("/v1/chat/completions", json={**body, "stream": False}) as second:
                assert second.status == 503
                assert int(second.headers["Retry-After"]) >= 1
                error = (await second.json())["error"]
                assert error["type"] == "overloaded_error" and error["code"] == "overloaded"
            anthropic = {"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
            async with http.post("/v1/messages", json=anthropic) as third:
                if third.status == 404:
                    pytest.skip("no Anthropic endpoint in this build yet")
                assert third.status == 529
                assert int(third.headers["Retry-After"]) >= 1
                assert (await third.json())["error"]["type"] == "overloaded_error"
    finally:
        await asyncio.to_thread(server.stop)


async def test_thread_count_changes_between_steps_without_changing_the_answer() -> None:
    """The tuner's trials switch llama.cpp's thread count mid-generation (llama_set_n_threads); the greedy answer
    must be the one a fixed count gives, token for token."""
    from router.engines.llamacpp_threads import ThreadTuner

    fixed = await started(n_parallel=1, n_threads=1)
    tuned = await started(n_parallel=1)
    try:
        tuned._tuner = ThreadTuner((1, 2), trial_steps=2, exploit_steps=3)
        expected = await Completion.gather(fixed.generate(chat(STORY, max_tokens=24)))
        seen: set[int] = set()
        chunks = []
        async for chunk in tuned.generate(chat(STORY, max_tokens=24)):
            seen.add(tuned.stats.threads)
            chunks.append(chunk)
        got = await Completion.gather(_replay(chunks))
        assert got.text == expected.text and got.usage == expected.usage
        assert tuned._tuner.trials >= 2 and seen == {1, 2}
    finally:
        await fixed.aclose()
        await tuned.aclose()


async def _replay(chunks: list) -> AsyncIterator:  # type: ignore[type-arg]
    for chunk in chunks:
        yield chunk
