"""The frontier tier against the fake upstream, driven by the real openai and anthropic SDKs.

Both ingress formats (OpenAI chat, Anthropic messages) × both provider formats (Anthropic SDK, OpenAI-compatible),
streaming and not, and every fault of the fake: each request ends in a correct answer or a well-formed error.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import anthropic
import openai
import pytest

from router.app import FRONTIER
from router.config import load_settings
from tests.conftest import MODEL
from tests.fakes.frontier import FakeFrontier
from tests.support.server import running

pytestmark = pytest.mark.model

PROVIDERS = {
    # name: (provider, fake behaviour, extra settings)
    "claude": ("anthropic", "ok", {}),
    "gpt": ("openai", "ok", {}),
    "claude-flaky": ("anthropic", "flaky_2", {}),
    "gpt-flaky": ("openai", "flaky_2", {}),
    "claude-429": ("anthropic", "error_429", {"fallbacks": ["gpt"]}),
    "gpt-500": ("openai", "error_500", {"fallbacks": ["claude"]}),
    "claude-529": ("anthropic", "error_529", {}),
    "claude-529-nolocal": ("anthropic", "error_529", {"fallback_to_local": False}),
    "claude-400": ("anthropic", "error_400", {"fallbacks": ["gpt"]}),
    "gpt-400": ("openai", "error_400", {}),
    "claude-midstream": ("anthropic", "stream_error_after_2", {}),
    "gpt-midstream": ("openai", "stream_error_after_2", {}),
    "claude-cut": ("anthropic", "cut_stream_2", {}),
    "gpt-cut": ("openai", "cut_stream_2", {}),
    "claude-hang": ("anthropic", "hang", {"first_token_timeout_s": 0.5, "fallbacks": ["gpt"]}),
    "gpt-slow-first": ("openai", "slow_first_token", {"first_token_timeout_s": 0.5, "fallback_to_local": False}),
    "claude-slow": ("anthropic", "slow", {}),
    "claude-tool": ("anthropic", "tool", {}),
    "gpt-tool": ("openai", "tool", {}),
}


def frontier_config(fake: FakeFrontier, key_file: Path, extra: str = "") -> str:
    # The cache is off: every request here must reach the fake upstream.
    lines = [
        "cache: {enabled: false}",
        "frontier:",
        "  resilience: {max_retries: 2, backoff_base_s: 0.01, backoff_max_s: 1.0}",
        "  models:",
    ]
    for name, (provider, behaviour, opts) in PROVIDERS.items():
        base = fake.url if provider == "anthropic" else fake.url + "/v1"
        fields = {
            "name": name,
            "provider": provider,
            "model_id": behaviour,
            "base_url": base,
            "api_key_file": str(key_file),
            "input_price_per_mtok": 3.0,
            "output_price_per_mtok": 15.0,
            **opts,
        }
        lines.append("    - " + str(fields).replace("'", '"').replace("True", "true").replace("False", "false"))
    return "\n".join(lines) + "\n" + extra


@pytest.fixture(scope="module")
def router(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frontier")
    key = tmp / "key"
    key.write_text("sk-test-key\n")
    cfg = tmp / "router.yaml"
    cfg.write_text(frontier_config(fake, key))
    with running(load_settings(cfg, environ={})) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake, router):
    fake.reset()
    router.app[FRONTIER].resilience.reset()


def oa(router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def an(router) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.base_url, api_key="x", max_retries=0, timeout=30)


QUESTION = "Plan the migration of our billing system"
EXPECTED = "Frontier answer about: " + QUESTION


def openai_chat(router, model: str, stream: bool):
    client = oa(router)
    messages = [{"role": "system", "content": "Be precise."}, {"role": "user", "content": QUESTION}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=50)
        return raw.headers, raw.parse().choices[0].message.content, raw.parse().usage
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, max_tokens=50, stream=True, stream_options={"include_usage": True}
    ) as resp:
        chunks = list(resp.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return resp.headers, text, chunks[-1].usage


def anthropic_chat(router, model: str, stream: bool):
    client = an(router)
    kwargs = {
        "model": model,
        "max_tokens": 50,
        "system": "Be precise.",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if not stream:
        raw = client.messages.with_raw_response.create(**kwargs)
        message = raw.parse()
        return raw.headers, "".join(b.text for b in message.content if b.type == "text"), message.usage
    with client.messages.stream(**kwargs) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        return s.response.headers, text, final.usage


INGRESS = {"openai": openai_chat, "anthropic": anthropic_chat}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", ["claude", "gpt"])
@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
def test_every_ingress_reaches_every_provider(router, fake, ingress: str, provider: str, stream: bool) -> None:
    headers, text, usage = INGRESS[ingress](router, provider, stream)
    assert text == EXPECTED
    assert headers["x-router-tier"] == "frontier" and headers["x-router-model"] == provider
    assert usage is not None
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    if PROVIDERS[provider][0] == "anthropic":
        assert sent.body["system"] == "Be precise." and sent.body["stream"] is True
        assert sent.headers.get("x-api-key") == "sk-test-key" or sent.headers.get("authorization") == (
            "Bearer sk-test-key"
        )
        assert "anthropic-version" in sent.headers
    else:
        assert sent.body["messages"][0] == {"role": "system", "content": "Be precise."}
        assert sent.headers["authorization"] == "Bearer sk-test-key"


@pytest.mark.parametrize("model", ["claude-flaky", "gpt-flaky"])
def test_retries_before_the_first_byte(router, fake, model: str) -> None:
    headers, text, _ = openai_chat(router, model, stream=True)
    assert text == EXPECTED
    assert headers["x-router-attempts"] == "3"
    assert len(fake.requests) == 3


@pytest.mark.parametrize(("model", "served"), [("claude-429", "gpt"), ("gpt-500", "claude")])
def test_fallback_chain(router, fake, model: str, served: str) -> None:
    headers, text, _ = anthropic_chat(router, model, stream=True)
    assert text == EXPECTED
    assert headers["x-router-model"] == served and headers["x-router-fallback"] == served
    assert [r.model for r in fake.requests].count(PROVIDERS[model][1]) == 3  # retried, then fell back


def test_last_resort_is_the_local_tier(router, fake) -> None:
    headers, text, _ = openai_chat(router, "claude-529", stream=False)
    assert headers["x-router-fallback"] == "local" and headers["x-router-tier"] == "local"
    assert headers["x-router-model"] == MODEL and text


def test_overloaded_without_local_fallback_is_a_clean_error(router) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        openai_chat(router, "claude-529-nolocal", stream=False)
    assert caught.value.status_code == 503
    with pytest.raises(anthropic.APIStatusError) as caught_a:
        anthropic_chat(router, "claude-529-nolocal", stream=True)
    assert caught_a.value.status_code == 529
    assert caught_a.value.type == "overloaded_error"


@pytest.mark.parametrize("model", ["claude-400", "gpt-400"])
def test_request_errors_pass_back_unretried(router, fake, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_chat(router, model, stream=False)
    assert "rejected" in caught.value.message or "invalid" in caught.value.message.lower()
    assert len(fake.requests) == 1  # neither retried nor sent to the fallback


@pytest.mark.parametrize("model", ["claude-midstream", "gpt-midstream", "claude-cut", "gpt-cut"])
def test_failure_after_the_first_byte_ends_the_stream_in_band(router, fake, model: str) -> None:
    received = []
    with (
        pytest.raises(openai.APIError),
        oa(router).chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}], max_tokens=50, stream=True
        ) as stream,
    ):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "Frontier answer"  # what came before the failure, and nothing else
    assert len(fake.requests) == 1  # no retry after the first byte


@pytest.mark.parametrize("model", ["claude-midstream", "gpt-cut"])
def test_anthropic_clients_get_an_error_event(router, fake, model: str) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        an(router).messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": QUESTION}]) as s,
    ):
        for _ in s.text_stream:
            pass
    assert caught.value.type in ("overloaded_error", "api_error")
    assert len(fake.requests) == 1


def test_hanging_provider_times_out_to_the_fallback(router, fake) -> None:
    headers, text, _ = openai_chat(router, "claude-hang", stream=True)
    assert text == EXPECTED and headers["x-router-model"] == "gpt"


def test_slow_first_token_without_fallback_is_a_timeout(router) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        openai_chat(router, "gpt-slow-first", stream=True)
    assert caught.value.status_code == 504


def test_slow_stream_is_relayed_chunk_by_chunk(router) -> None:
    import time

    arrivals = []
    with oa(router).chat.completions.create(
        model="claude-slow", messages=[{"role": "user", "content": QUESTION}], max_tokens=50, stream=True
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == len(EXPECTED.split(" "))
    assert min(gaps) > 0.02  # the fake paces deltas 50 ms apart: nothing was buffered and sent in one go


def test_tools_translate_both_ways(router, fake) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    client = oa(router)
    out = client.chat.completions.create(
        model="claude",
        tools=tools,
        max_tokens=50,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
        ],
    )
    assert out.choices[0].message.content.startswith("Frontier answer about:")
    sent = fake.requests[-1].body
    assert sent["tools"][0] == {
        "name": "weather",
        "description": "Weather in a city",
        "input_schema": tools[0]["function"]["parameters"],
    }
    assert sent["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert sent["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": "Sunny, 21C",
    }


WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_client_gets_tool_calls_from_anthropic(router, stream: bool) -> None:
    client = oa(router)
    kwargs = {
        "model": "claude-tool",
        "tools": WEATHER,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert (call.id, call.function.name, call.function.arguments) == ("toolu_fake1", "weather", '{"city": "Paris"}')
        return
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id == "toolu_fake1" and deltas[0].function.name == "weather"
    assert "".join(d.function.arguments or "" for d in deltas) == '{"city": "Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_client_gets_tool_use_from_openai(router, stream: bool) -> None:
    client = an(router)
    kwargs = {
        "model": "gpt-tool",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [
            {
                "name": "weather",
                "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert (block.id, block.name, block.input) == ("call_fake1", "weather", {"city": "Paris"})


def test_breaker_opens_and_recovers(fake, tmp_path) -> None:
    import time

    key = tmp_path / "key"
    key.write_text("k")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        "cache: {enabled: false}\n"
        "frontier:\n  resilience: {max_retries: 0, breaker_failures: 2, breaker_cooldown_s: 0.5}\n  models:\n"
        f'    - {{name: flaky, provider: openai, model_id: flaky_3, base_url: "{fake.url}/v1", '
        f'api_key_file: "{key}", fallback_to_local: false}}\n'
    )
    with running(load_settings(cfg, environ={})) as server:
        breaker = server.app[FRONTIER].resilience.breakers["flaky"]
        for _ in range(2):
            with pytest.raises(openai.APIStatusError):
                openai_chat(server, "flaky", stream=False)
        assert breaker.state == "open"
        sent = len(fake.requests)
        with pytest.raises(openai.APIStatusError) as caught:
            openai_chat(server, "flaky", stream=False)
        assert "circuit open" in caught.value.message
        assert len(fake.requests) == sent  # the open breaker sent nothing upstream
        time.sleep(0.6)
        assert breaker.state == "half-open"
        with pytest.raises(openai.APIStatusError):  # the probe: flaky_3's third failure, so open again
            openai_chat(server, "flaky", stream=False)
        assert breaker.state == "open" and len(fake.requests) == sent + 1
        time.sleep(0.6)
        _, text, _ = openai_chat(server, "flaky", stream=False)  # the next probe succeeds
        assert text == EXPECTED and breaker.state == "closed"
