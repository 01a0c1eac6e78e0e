"""Bad input gets a 4xx in OpenAI's error shape naming the field; never a 500, never a traceback."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import MODEL

pytestmark = pytest.mark.model

OK_MESSAGES = [{"role": "user", "content": "hi"}]


async def _request(base_url: str, method: str, path: str, data: bytes | None = None, headers=None):
    async with aiohttp.ClientSession() as s, s.request(method, base_url + path, data=data, headers=headers) as r:
        return r.status, r.headers.copy(), await r.read()


def call(base_url: str, method: str, path: str, data: bytes | None = None, headers=None):
    return asyncio.run(_request(base_url, method, path, data, headers))


def assert_openai_error(status: int, headers, raw: bytes, expected_status: int, param: str | None = None) -> dict:
    assert status == expected_status, raw
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-request-id"]
    body = orjson.loads(raw)
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    if param is not None:
        assert err["param"] == param, err
        assert param.split(".")[0].split("[")[0] in err["message"], err
    return err


BAD_BODIES = [
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": "hi"}, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": MODEL, "messages": ["hi"]}, "messages[0]"),
    ({"messages": OK_MESSAGES}, "model"),
    ({"model": 3, "messages": OK_MESSAGES}, "model"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": -5}, "max_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": "10"}, "max_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": 1.5}, "max_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_completion_tokens": 0}, "max_completion_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "max_tokens": 100_000}, "max_tokens"),
    ({"model": MODEL, "messages": OK_MESSAGES, "temperature": 3}, "temperature"),
    ({"model": MODEL, "messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": OK_MESSAGES, "top_p": 1.5}, "top_p"),
    ({"model": MODEL, "messages": OK_MESSAGES, "n": 2}, "n"),
    ({"model": MODEL, "messages": OK_MESSAGES, "stream": "yes"}, "stream"),
    ({"model": MODEL, "messages": OK_MESSAGES, "stop": 5}, "stop"),
    ({"model": MODEL, "messages": OK_MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": MODEL, "messages": OK_MESSAGES, "seed": "x"}, "seed"),
    ({"model": MODEL, "messages": OK_MESSAGES, "response_format": {"type": "xml"}}, "response_format.type"),
    ({"model": MODEL, "messages": OK_MESSAGES, "stream_options": 1}, "stream_options"),
    ({"model": MODEL, "messages": OK_MESSAGES, "logprobs": "yes"}, "logprobs"),
    ({"model": MODEL, "messages": OK_MESSAGES, "top_logprobs": 3}, "top_logprobs"),
    ({"model": MODEL, "messages": OK_MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES, ids=[p for _, p in BAD_BODIES])
def test_bad_field_is_a_400_naming_it(base_url: str, body: dict, param: str) -> None:
    status, headers, raw = call(base_url, "POST", "/v1/chat/completions", orjson.dumps(body))
    assert_openai_error(status, headers, raw, 400, param)


def test_prompt_beyond_context_is_a_400(base_url: str) -> None:
    long = "word " * 5000
    body = {"model": MODEL, "messages": [{"role": "user", "content": long}]}
    status, headers, raw = call(base_url, "POST", "/v1/chat/completions", orjson.dumps(body))
    err = assert_openai_error(status, headers, raw, 400)
    assert err["code"] == "context_length_exceeded"


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"null", b"\xff\xfe", b'{"model": NaN}'])
def test_malformed_json_is_a_400(base_url: str, raw: bytes) -> None:
    status, headers, body = call(base_url, "POST", "/v1/chat/completions", raw)
    assert_openai_error(status, headers, body, 400)


def test_body_over_the_limit_is_a_413(base_url: str) -> None:
    big = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]})
    status, headers, raw = call(base_url, "POST", "/v1/chat/completions", big)
    assert_openai_error(status, headers, raw, 413)


def test_unknown_path_is_a_404_and_wrong_method_a_405(base_url: str) -> None:
    assert_openai_error(*call(base_url, "GET", "/v1/nothing-here"), 404)
    assert_openai_error(*call(base_url, "GET", "/v1/chat/completions"), 405)
    assert_openai_error(*call(base_url, "DELETE", "/v1/models"), 405)


def test_unknown_model_is_a_404_through_the_sdk(openai_client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="gpt-17", messages=OK_MESSAGES)
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


def test_health_and_readiness(base_url: str) -> None:
    status, _, raw = call(base_url, "GET", "/healthz")
    assert (status, orjson.loads(raw)) == (200, {"status": "ok"})
    status, _, raw = call(base_url, "GET", "/readyz")
    body = orjson.loads(raw)
    assert (status, body["status"]) == (200, "ready")
    engine = next(iter(body["models"].values()))
    assert engine["state"] == "up" and engine["isolation"] == "process" and engine["pid"] > 0
    assert engine["cpu"]["path"] in {"AVX2", "AVX512", "AVX", "SSE3", "SSSE3", "scalar"} or engine["cpu"]["path"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(
    ["model", "messages", "max_tokens", "temperature", "top_p", "stop", "stream", "n", "seed", "response_format"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(fields, json_values, max_size=6))
def test_arbitrary_bodies_never_cause_a_5xx(base_url: str, body: dict) -> None:
    body.setdefault("max_tokens", 1)  # keep any request that happens to be valid short
    status, headers, raw = call(base_url, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert status < 500, raw
    if status >= 400:
        assert_openai_error(status, headers, raw, status)
