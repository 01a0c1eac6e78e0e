"""Cache keys: everything that can change an answer is in the hard key; semantic matching only where safe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.cache.keys import cache_keys, embedding_text, semantic_safe
from router.config import CacheSettings
from router.types import Message, ResponseFormat, ToolSpec
from tests.support.cache import chat, decide

SETTINGS = CacheSettings()


def keys(request, **kw):
    return cache_keys(request, decide(request), SETTINGS, semantic=True, **kw)


def test_same_request_same_keys_and_stable_hash() -> None:
    a, b = keys(chat("Hello there")), keys(chat("Hello there"))
    assert a == b and a.exact_hash == b.exact_hash
    assert a.namespace is not None and a.prompt == "Hello there"


@pytest.mark.parametrize(
    "change",
    [
        lambda r: replace(r, tenant="other"),
        lambda r: replace(r, api="anthropic"),
        lambda r: replace(r, sampling=replace(r.sampling, temperature=0.2)),
        lambda r: replace(r, sampling=replace(r.sampling, top_p=0.9)),
        lambda r: replace(r, sampling=replace(r.sampling, max_tokens=17)),
        lambda r: replace(r, sampling=replace(r.sampling, stop=("\n",))),
        lambda r: replace(r, sampling=replace(r.sampling, seed=7)),
        lambda r: replace(r, response_format=ResponseFormat(type="json_object")),
        lambda r: replace(r, messages=[Message("system", "Be terse."), *r.messages]),
        lambda r: replace(r, parallel_tool_calls=False),
    ],
)
def test_every_hard_key_field_changes_both_keys(change) -> None:
    base = chat("Hello there")
    changed = change(base)
    a, b = keys(base), cache_keys(changed, decide(base), SETTINGS, semantic=True)
    assert a.exact != b.exact and a.namespace != b.namespace


def test_a_failed_tool_result_is_not_the_same_conversation_as_a_good_one() -> None:
    ok = chat("Hello there")
    ok = replace(ok, messages=[Message("tool", "42", tool_call_id="call_1"), *ok.messages])
    failed = replace(ok, messages=[replace(ok.messages[0], is_error=True), *ok.messages[1:]])
    a, b = keys(ok), cache_keys(failed, decide(ok), SETTINGS, semantic=True)
    assert a.exact != b.exact
    assert a.namespace is None and b.namespace is None  # tool traffic is never matched semantically


def test_the_decided_model_is_in_the_key() -> None:
    request = chat("Hello there")
    other = replace(decide(request), tier="frontier", model="some-frontier-model")
    assert cache_keys(request, other, SETTINGS, semantic=True).namespace != keys(request).namespace


def test_json_schema_key_order_does_not_matter() -> None:
    fmt1 = ResponseFormat(type="json_schema", json_schema={"type": "object", "required": ["a"]})
    fmt2 = ResponseFormat(type="json_schema", json_schema={"required": ["a"], "type": "object"})
    assert keys(chat("x", response_format=fmt1)).exact == keys(chat("x", response_format=fmt2)).exact


def test_semantic_only_where_safe() -> None:
    assert semantic_safe(chat("hi", system="Be terse."), SETTINGS)
    assert not semantic_safe(chat("hi", temperature=0.9), SETTINGS)
    multi = chat("and then?")
    multi.messages = [Message("user", "hi"), Message("assistant", "hello"), *multi.messages]
    assert not semantic_safe(multi, SETTINGS)
    assert semantic_safe(multi, CacheSettings(semantic_multi_turn=True))
    tools = chat("weather?", tools=[ToolSpec("weather", None, {"type": "object"})])
    assert not semantic_safe(tools, SETTINGS)
    assert keys(tools).namespace is None and keys(multi).namespace is None


def test_multi_turn_context_is_in_the_namespace() -> None:
    settings = CacheSettings(semantic_multi_turn=True)
    a, b = chat("and then?"), chat("and then?")
    a.messages = [Message("user", "tell me a story"), Message("assistant", "once"), *a.messages]
    b.messages = [Message("user", "tell me a joke"), Message("assistant", "once"), *b.messages]
    ka = cache_keys(a, decide(a), settings, semantic=True)
    kb = cache_keys(b, decide(b), settings, semantic=True)
    assert ka.prompt == kb.prompt == "and then?" and ka.namespace != kb.namespace


def test_embedding_text_drops_only_spacing_and_closing_punctuation() -> None:
    assert embedding_text("  What is   the GDP\nof Germany?! ") == "What is the GDP of Germany"
    assert embedding_text("Is 3.5 > 3?") == "Is 3.5 > 3"
