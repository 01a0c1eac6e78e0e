"""The real `openai` SDK against the real router serving the real SmolLM2 model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MODEL

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_chat_completion_answers(openai_client) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, max_tokens=16, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["x-request-id"]
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_bounds_the_answer(openai_client) -> None:
    completion = openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}], max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


def test_greedy_is_deterministic_and_seed_repeats(openai_client) -> None:
    def ask(**kw: object) -> str:
        return (
            openai_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, **kw)
            .choices[0]
            .message.content
        )

    assert ask(temperature=0) == ask(temperature=0)
    assert ask(temperature=1.0, seed=7) == ask(temperature=1.0, seed=7)


def test_stream_yields_tokens_incrementally_with_usage(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 6  # one chunk per token (a few tokens may merge across UTF-8 boundaries)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None and usage.completion_tokens == 12
    # Streaming and non-streaming greedy answers agree.
    whole = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=12,
        temperature=0,
    )
    assert "".join(deltas) == whole.choices[0].message.content


def test_stop_sequence_cuts_the_answer(openai_client) -> None:
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    full = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0)
    text = full.choices[0].message.content
    assert "5" in text, text  # the premise: the model counts past 5
    stopped = openai_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=40, temperature=0, stop=["5"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index("5")]
    # The same holds when streaming: nothing of the stop sequence leaks out.
    stream = openai_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=40, temperature=0, stop=["5"], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text[: text.index("5")]


def test_json_schema_output_parses(openai_client) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a person named Bob who is 30 years old, as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(completion.choices[0].message.content)
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_json_object_output_parses(openai_client) -> None:
    completion = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object with a key 'color'."}],
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_models_lists_the_default(openai_client) -> None:
    ids = [m.id for m in openai_client.models.list()]
    assert ids[:4] == ["auto", "local", "frontier", MODEL]  # then the embedding model, when enabled
