"""Constrained JSON on the llama.cpp engine: the grammar it builds, probed token by token, and what the real model
writes under it.

The probes use the grammar sampler exactly as the engine builds it (`engine._grammar`) on the model's own
vocabulary, one ASCII character per token, so each assertion is about the grammar, not about what the model
happens to pick.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from router.types import ChatRequest, Completion, Message, ResponseFormat, SamplingParams
from tests.engines.conftest import local_settings

pytest.importorskip("llama_cpp")

import llama_cpp as L

from router.engines.llamacpp_batched import BatchedLlamaCppEngine

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

CAP_CHARS, CAP_ITEMS = 8, 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_caps() -> AsyncIterator[BatchedLlamaCppEngine]:
    """Tiny caps (so a probe can reach them) and greedy JSON decoding when a request sets no temperature."""
    engine = BatchedLlamaCppEngine(
        local_settings("caps", json_max_string_chars=CAP_CHARS, json_max_items=CAP_ITEMS, json_temperature=0.0)
    )
    await engine.start()
    yield engine
    await engine.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def defaults() -> AsyncIterator[BatchedLlamaCppEngine]:
    """The shipped JSON settings, room for the default max_tokens (512)."""
    engine = BatchedLlamaCppEngine(local_settings("defaults", n_ctx=1024, default_max_tokens=512))
    await engine.start()
    yield engine
    await engine.aclose()


def request(schema: dict[str, Any] | None, kind: str = "json_schema", text: str = "x", **sampling: Any) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message("user", text)],
        sampling=SamplingParams(**sampling),
        response_format=ResponseFormat(kind, schema, "s"),  # type: ignore[arg-type]
    )


class Probe:
    """A fresh grammar sampler of the engine's, fed one character (token) at a time."""

    def __init__(self, engine: BatchedLlamaCppEngine, schema: dict[str, Any] | None, kind: str = "json_schema"):
        self.engine = engine
        self.grammar = engine._grammar(request(schema, kind))
        self.eos = L.llama_vocab_eos(engine._vocab)

    def close(self) -> None:
        L.llama_sampler_free(self.grammar)

    def token(self, char: str) -> int:
        out = (L.llama_token * 8)()
        raw = char.encode()
        n = L.llama_tokenize(self.engine._vocab, raw, len(raw), out, 8, False, False)
        assert n == 1, f"{char!r} is not one token"
        return out[0]

    def allows(self, tok: int) -> bool:
        data = (L.llama_token_data * 1)()
        data[0].id, data[0].logit, data[0].p = tok, 0.0, 0.0
        arr = L.llama_token_data_array(data, 1, -1, False)
        L.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return data[0].logit != -math.inf

    def feed(self, text: str) -> None:
        for char in text:
            tok = self.token(char)
            assert self.allows(tok), f"the grammar refused {char!r} after the text before it in {text!r}"
            L.llama_sampler_accept(self.grammar, tok)

    def next_ok(self, char: str) -> bool:
        return self.allows(self.token(char))


def probe(engine: BatchedLlamaCppEngine, schema: dict[str, Any] | None, kind: str = "json_schema") -> Probe:
    return Probe(engine, schema, kind)


ANSWER = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


async def test_a_raw_newline_inside_a_string_is_refused(small_caps) -> None:
    p = probe(small_caps, ANSWER)
    p.feed('{"answer": "ab')
    assert not p.next_ok("\n") and not p.next_ok("\t")  # not JSON: strict parsers reject a raw control character
    p.feed("\\n")  # the escape is fine
    p.feed('"}')
    p.close()


async def test_the_answer_ends_where_the_root_value_closes(small_caps) -> None:
    for kind, schema, text in [("json_schema", ANSWER, '{"answer": "ok"}'), ("json_object", None, '{"a": [1, "b"]}')]:
        p = probe(small_caps, schema, kind)
        p.feed(text)
        assert not p.next_ok(" ") and not p.next_ok("\n") and not p.next_ok("}")
        assert p.allows(p.eos)  # only end-of-generation is left
        p.close()


async def test_strings_without_max_length_are_capped(small_caps) -> None:
    p = probe(small_caps, ANSWER)
    p.feed('{"answer": "' + "a" * CAP_CHARS)
    assert not p.next_ok("a") and p.next_ok('"')
    p.close()
    own = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}}}
    p = probe(small_caps, own)
    p.feed('{"answer": "' + "a" * 12)  # the schema's own bound stands, beyond the default cap
    assert not p.next_ok("a")
    p.close()


async def test_arrays_and_open_objects_without_bounds_are_capped(small_caps) -> None:
    tags = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "integer"}}}}
    p = probe(small_caps, tags)
    p.feed('{"tags": [1, 2, 3')
    assert not p.next_ok(",") and p.next_ok("]")
    p.close()
    own = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 5}}}
    p = probe(small_caps, own)
    p.feed('{"tags": [1, 2, 3, 4, 5')
    assert not p.next_ok(",")
    p.close()
    scores = {"type": "object", "properties": {"s": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    p = probe(small_caps, scores)
    p.feed('{"s": {"a": 1, "b": 2, "c": 3')
    assert not p.next_ok(",") and p.next_ok("}")
    p.close()


async def test_an_empty_sub_schema_allows_any_value(small_caps) -> None:
    for value in ("12", '"t"', "[true]", "null", '{"k": 1}'):
        p = probe(small_caps, {"type": "object", "properties": {"x": {}}, "required": ["x"]})
        p.feed('{"x": ' + value + "}")
        p.close()


async def test_json_temperature_applies_only_when_the_request_sets_none(small_caps) -> None:
    async def text(**sampling: Any) -> str:
        r = request(ANSWER, text="Describe the sea in a few words.", max_tokens=24, **sampling)
        return (await Completion.gather(small_caps.generate(r))).text

    # json_temperature 0 (this engine's): greedy whatever the seed, when the request gave no temperature.
    unset = {await text(seed=s, temperature_given=False) for s in (1, 2, 3)}
    assert len(unset) == 1
    # An explicit temperature is the client's and is kept: 1.0 samples differently per seed.
    explicit = {await text(seed=s, temperature=1.0) for s in (1, 2, 3, 4)}
    assert len(explicit) > 1


SCHEMAS = {
    "person": (
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "city": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["name", "age", "city"],
            "additionalProperties": False,
        },
        "Alice Smith is 31 and lives in Paris.",
    ),
    "sentiment": (
        {
            "type": "object",
            "properties": {
                "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                "confidence": {"type": "number"},
            },
            "required": ["sentiment", "confidence"],
        },
        "I loved this movie, it was great!",
    ),
    "tags": (
        {
            "type": "object",
            "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["title", "tags"],
        },
        "Write a title and tags for a blog post about baking sourdough bread.",
    ),
    "order": (
        {
            "type": "object",
            "$defs": {
                "Item": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}},
                    "required": ["name", "qty"],
                }
            },
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}, "total": {"type": "integer"}},
            "required": ["items", "total"],
        },
        "I bought 2 apples and 3 pears.",
    ),
    "answer": (
        {
            "type": "object",
            "properties": {"reasoning": {"type": "string"}, "answer": {"type": "string"}},
            "required": ["reasoning", "answer"],
        },
        "What is 12 times 7?",
    ),
}


@pytest.mark.parametrize("name", SCHEMAS)
async def test_ordinary_schemas_finish_valid_json_within_the_default_budget(defaults, name: str) -> None:
    """No max_tokens, no temperature (as LangChain's with_structured_output sends it): every answer is complete,
    strict JSON that satisfies its schema. Before the grammar fixes 9 of 40 such answers at temperature 1.0 ran to
    max_tokens or broke JSON (benchmarks/RESULTS.md, "Structured output on the local model")."""
    import asyncio

    schema, text = SCHEMAS[name]

    async def one(seed: int) -> Completion:
        r = request(schema, text=text, seed=seed, temperature_given=False)
        return await Completion.gather(defaults.generate(r))

    for answer in await asyncio.gather(*(one(seed) for seed in range(4))):
        assert answer.finish_reason == "stop", answer.text[-80:]
        value = json.loads(answer.text)  # strict: no raw control characters
        jsonschema.validate(value, schema)


async def test_a_tight_max_tokens_still_ends_in_valid_json(defaults) -> None:
    """Free text that would run far past max_tokens: near the end of the budget the grammar's closing tokens are
    preferred (end the string, close the containers), so the answer is complete JSON with room to spare."""
    import asyncio

    schema = {
        "type": "object",
        "properties": {"story": {"type": "string"}, "moral": {"type": "string"}, "tags": {"type": "array"}},
        "required": ["story", "moral", "tags"],
    }

    async def one(seed: int) -> Completion:
        r = request(schema, text="Tell a long story about a dragon.", seed=seed, temperature=1.0, max_tokens=60)
        return await Completion.gather(defaults.generate(r))

    for answer in await asyncio.gather(*(one(seed) for seed in range(4))):
        assert answer.finish_reason == "stop", answer.text
        assert answer.usage.completion_tokens <= 60
        jsonschema.validate(json.loads(answer.text), schema)
