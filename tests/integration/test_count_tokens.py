"""`client.messages.count_tokens` and message_start's input_tokens, with the real anthropic SDK.

Local targets count with SmolLM2's own tokenizer (so the count equals the usage the answer reports); frontier
targets use the provider's count API when configured (the fake implements Anthropic's), else the estimate.
"""

from __future__ import annotations

import anthropic
import pytest

from router.config import load_settings
from router.http.anthropic import parse_messages_request
from router.tokens import estimate_prompt_tokens
from tests.conftest import MODEL
from tests.support.server import running

pytestmark = pytest.mark.model

SYSTEM = "You are terse."
MESSAGES = [{"role": "user", "content": "Name three primary colours, comma separated."}]


def client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0, timeout=60)


def message_start_tokens(c: anthropic.Anthropic, **kwargs) -> tuple[int, int]:
    """(message_start.usage.input_tokens, the final message's usage.input_tokens) of one stream."""
    start = None
    with c.messages.stream(max_tokens=4, **kwargs) as s:
        for event in s:
            if event.type == "message_start":
                start = event.message.usage.input_tokens
        final = s.get_final_message()
    assert start is not None
    return start, final.usage.input_tokens


def test_local_count_is_the_models_own_tokenizer(base_url: str) -> None:
    c = client(base_url)
    counted = c.messages.with_raw_response.count_tokens(model=MODEL, system=SYSTEM, messages=MESSAGES)
    n = counted.parse().input_tokens
    assert counted.headers["x-router-token-count"] == "model-tokenizer"
    assert counted.headers["x-router-tier"] == "local"
    answer = c.messages.create(model=MODEL, max_tokens=2, system=SYSTEM, messages=MESSAGES)
    assert n == answer.usage.input_tokens  # exactly what the engine ran
    longer = c.messages.count_tokens(
        model=MODEL, system=SYSTEM, messages=[{"role": "user", "content": MESSAGES[0]["content"] + " Then explain."}]
    )
    assert longer.input_tokens > n


def test_local_stream_reports_input_tokens_in_message_start(base_url: str) -> None:
    c = client(base_url)
    n = c.messages.count_tokens(model=MODEL, system=SYSTEM, messages=MESSAGES).input_tokens
    start, final = message_start_tokens(c, model=MODEL, system=SYSTEM, messages=MESSAGES)
    assert start == final == n > 0


def test_count_tokens_errors_are_anthropic_errors(base_url: str) -> None:
    c = client(base_url)
    with pytest.raises(anthropic.BadRequestError) as bad:
        c.messages.count_tokens(model=MODEL, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="no-such-model", messages=MESSAGES)


@pytest.fixture(scope="module")
def frontier_router(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("count")
    key = tmp / "key"
    key.write_text("sk-test\n")
    cfg = tmp / "router.yaml"
    common = f'api_key_file: "{key}"'
    cfg.write_text(
        "cache: {enabled: false}\nfrontier:\n  models:\n"
        f'    - {{name: claude, provider: anthropic, model_id: ok, base_url: "{fake.url}", {common}}}\n'
        f'    - {{name: claude-count, provider: anthropic, model_id: ok, base_url: "{fake.url}", {common}, '
        "count_tokens: provider}\n"
        f'    - {{name: gpt, provider: openai, model_id: ok, base_url: "{fake.url}/v1", {common}}}\n'
    )
    with running(load_settings(cfg, environ={})) as server:
        yield server


def test_frontier_count_uses_the_provider_api_when_configured(frontier_router, fake) -> None:
    c = client(frontier_router.base_url)
    counted = c.messages.with_raw_response.count_tokens(model="claude-count", system=SYSTEM, messages=MESSAGES)
    assert counted.headers["x-router-token-count"] == "provider"
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages/count_tokens" and sent.body["system"] == SYSTEM
    answer = c.messages.create(model="claude-count", max_tokens=10, system=SYSTEM, messages=MESSAGES)
    assert counted.parse().input_tokens == answer.usage.input_tokens  # the upstream's own count, both times


@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_frontier_count_is_the_documented_estimate_otherwise(frontier_router, fake, model: str) -> None:
    c = client(frontier_router.base_url)
    fake.reset()
    counted = c.messages.with_raw_response.count_tokens(model=model, system=SYSTEM, messages=MESSAGES)
    assert counted.headers["x-router-token-count"] == "estimate"
    assert fake.requests == []  # nothing went upstream
    parsed = parse_messages_request({"model": model, "max_tokens": 1, "system": SYSTEM, "messages": MESSAGES})
    assert counted.parse().input_tokens == estimate_prompt_tokens(parsed)


def test_frontier_stream_message_start_has_the_upstream_count(frontier_router) -> None:
    c = client(frontier_router.base_url)
    start, final = message_start_tokens(c, model="claude", system=SYSTEM, messages=MESSAGES)
    assert start == final > 0  # the Anthropic upstream's message_start count, passed through up front
    start, final = message_start_tokens(c, model="gpt", system=SYSTEM, messages=MESSAGES)
    # An OpenAI-compatible upstream reports its count only at the end: message_start carries the estimate.
    parsed = parse_messages_request({"model": "gpt", "max_tokens": 1, "system": SYSTEM, "messages": MESSAGES})
    assert start == estimate_prompt_tokens(parsed) and final > 0
