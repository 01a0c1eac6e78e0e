"""The engine contract, checked the same way on every engine (see conftest.py for the list).

Streaming order, stop sequences, max_tokens, usage, per-request sampling, structured output, cancellation that
frees capacity, errors that surface as the router's own exceptions, and 8 concurrent streams whose greedy answers
equal the ones each prompt gets alone.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from router.engines.base import Engine
from router.errors import InvalidRequest, Overloaded
from router.types import ChatRequest, Chunk, Completion, ResponseFormat
from tests.engines.conftest import N_CTX, Case, chat

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

STORY = "Write a long story about a dragon who learns to fly."
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three colors.",
    "What is 2+2?",
    "Tell me a joke about cats.",
    "What is Python?",
    "Describe a rainy day.",
    "Why is the sky blue?",
]


async def collect(engine: Engine, request: ChatRequest) -> list[Chunk]:
    return [chunk async for chunk in engine.generate(request)]


async def answer(engine: Engine, request: ChatRequest) -> Completion:
    return await Completion.gather(engine.generate(request))


async def wait_idle(case: Case, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while case.in_flight():
        assert time.monotonic() < deadline, f"{case.name}: {case.in_flight()} requests still in flight"
        await asyncio.sleep(0.02)


async def test_is_an_engine(case: Case) -> None:
    assert isinstance(case.engine, Engine)
    assert await case.engine.health()


async def test_streams_deltas_then_one_final_chunk(case: Case) -> None:
    chunks = await collect(case.engine, chat(STORY, max_tokens=8))
    *body, last = chunks
    assert body, "no text before the final chunk"
    assert all(c.finish_reason is None and c.usage is None for c in body)
    assert all(c.text for c in body)  # no empty deltas without logprobs
    assert last.finish_reason == "length" and last.usage is not None and not last.text
    whole = await answer(case.engine, chat(STORY, max_tokens=8))
    assert "".join(c.text for c in body) == whole.text


async def test_greedy_is_deterministic_and_seed_repeats(case: Case) -> None:
    first = await answer(case.engine, chat(PROMPTS[0], max_tokens=10))
    assert first.text and first.text == (await answer(case.engine, chat(PROMPTS[0], max_tokens=10))).text
    hot = chat(STORY, max_tokens=10, temperature=1.0, seed=7)
    assert (await answer(case.engine, hot)).text == (await answer(case.engine, hot)).text


async def test_max_tokens_ends_with_length(case: Case) -> None:
    result = await answer(case.engine, chat(STORY, max_tokens=5))
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 5


async def test_stop_sequence_cuts_the_answer(case: Case) -> None:
    full = (await answer(case.engine, chat(STORY, max_tokens=16))).text
    words = full.split()
    assert len(words) >= 4, full
    stop = words[3]
    expected = full[: full.index(stop)]
    result = await answer(case.engine, chat(STORY, max_tokens=16, stop=("\x00never", stop)))
    assert result.finish_reason == "stop"
    assert result.text == expected
    assert stop not in result.text


async def test_usage_accounting(case: Case) -> None:
    request = chat(PROMPTS[2], max_tokens=6)
    result = await answer(case.engine, request)
    assert 0 < result.usage.completion_tokens <= 6
    assert result.usage.prompt_tokens > 5
    count = getattr(case.engine, "count_prompt_tokens", None)
    if count is not None:
        assert result.usage.prompt_tokens == count(request)
    if case.logprobs:
        with_lp = await answer(case.engine, chat(PROMPTS[2], max_tokens=6, logprobs=True))
        assert with_lp.text == result.text
        assert with_lp.logprobs is not None
        assert len(with_lp.logprobs) == with_lp.usage.completion_tokens
        assert all(lp <= 0.0 for lp in with_lp.logprobs)


async def test_json_schema_output_parses(case: Case) -> None:
    if not case.engine.capabilities.json_schema:  # type: ignore[attr-defined]
        pytest.skip("no structured output")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    request = chat("Give me a person as JSON with a name and an age.", max_tokens=40)
    request.response_format = ResponseFormat(type="json_schema", json_schema=schema)
    result = await answer(case.engine, request)
    data = orjson.loads(result.text)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


async def test_cancellation_frees_capacity(case: Case) -> None:
    engine = case.engine
    streams = [engine.generate(chat(f"{STORY} Part {i}.", max_tokens=200)) for i in range(case.slots)]
    try:
        for stream in streams:
            await anext(stream)
        # Every slot is busy and there is no waiting room: a newcomer is refused at once.
        extra = engine.generate(chat("Hi", max_tokens=2))
        with pytest.raises(Overloaded) as refused:
            await anext(extra)
        assert refused.value.retry_after is None or refused.value.retry_after >= 1
    finally:
        for stream in streams:
            await stream.aclose()  # the client goes away mid-answer
    await wait_idle(case)
    assert (await answer(engine, chat("Hi", max_tokens=2))).usage.completion_tokens == 2


async def test_errors_surface_as_router_errors(case: Case) -> None:
    too_long = chat("hello " * (N_CTX + 10), max_tokens=4)
    with pytest.raises(InvalidRequest):
        await answer(case.engine, too_long)
    with pytest.raises(InvalidRequest):
        await answer(case.engine, chat("Hi", max_tokens=N_CTX))
    await wait_idle(case)
    assert (await answer(case.engine, chat("Hi", max_tokens=2))).usage.completion_tokens == 2


async def test_concurrent_streams_are_independent(case: Case) -> None:
    """8 streams at once: each gets the greedy answer it gets alone, and they really overlap in time."""
    alone = [(await answer(case.engine, chat(p, max_tokens=12))).text for p in PROMPTS]
    first_at: list[float] = []
    done_at: list[float] = []

    async def one(prompt: str) -> str:
        parts: list[str] = []
        async for chunk in case.engine.generate(chat(prompt, max_tokens=12)):
            if not parts:
                first_at.append(time.monotonic())
            parts.append(chunk.text)
        done_at.append(time.monotonic())
        return "".join(parts)

    together = await asyncio.gather(*(one(p) for p in PROMPTS))
    assert together == alone
    assert max(first_at) < min(done_at), "the streams did not run at the same time"
