"""Escalation and advisor with the real local model and the fake frontier."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from router.config import load_settings
from tests.conftest import MODEL
from tests.fakes.frontier import FakeFrontier
from tests.support.server import running

pytestmark = pytest.mark.model


def start(fake: FakeFrontier, tmp_path, frontier_extra: str = "", routing: str = "", model_id: str = "ok"):
    key = tmp_path / "key"
    key.write_text("k")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        "cache: {enabled: false}\n"  # every request here must run the local model and reach the fake
        f"{routing}frontier:\n"
        f"  models:\n"
        f'    - {{name: claude, provider: anthropic, model_id: {model_id}, base_url: "{fake.url}", '
        f'api_key_file: "{key}"}}\n'
        f"{frontier_extra}"
    )
    return running(load_settings(cfg, environ={}))


def ask(server, prompt: str, **kw: object):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    return client.chat.completions.with_raw_response.create(
        model=kw.pop("model", "auto"), messages=[{"role": "user", "content": prompt}], **kw
    )


CLASSIFY = "Classify the sentiment of this review as positive or negative: 'I love this phone.'"


def test_confident_local_answers_stay_local(fake, tmp_path) -> None:
    with start(fake, tmp_path, "  escalation: {min_mean_logprob: -100.0}\n") as server:
        fake.reset()
        raw = ask(server, CLASSIFY, max_tokens=8, temperature=0)
        assert raw.headers["x-router-tier"] == "local" and "x-router-escalated" not in raw.headers
        assert raw.parse().model == MODEL and len(fake.requests) == 0


def test_low_confidence_escalates(fake, tmp_path) -> None:
    # A threshold no real answer reaches: every local answer counts as unsure.
    with start(fake, tmp_path, "  escalation: {min_mean_logprob: -0.0001}\n") as server:
        fake.reset()
        raw = ask(server, CLASSIFY, max_tokens=8, temperature=0)
        assert raw.headers["x-router-escalated"] == "confidence"
        assert raw.headers["x-router-tier"] == "frontier" and raw.headers["x-router-model"] == "claude"
        assert raw.parse().choices[0].message.content.startswith("Frontier answer about: Classify")
        assert len(fake.requests) == 1
        # Streaming requests: their first tokens are judged before the first byte (escalation.streaming: prefix).
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
        with client.chat.completions.with_streaming_response.create(
            model="auto", messages=[{"role": "user", "content": CLASSIFY}], max_tokens=8, stream=True
        ) as resp:
            assert resp.headers["x-router-escalated"] == "confidence"
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
        assert text.startswith("Frontier answer about:")


def stream_text(server, prompt: str, **kw: object) -> tuple[dict[str, str], list[str], list[object]]:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    with client.chat.completions.with_streaming_response.create(
        model=kw.pop("model", "auto"), messages=[{"role": "user", "content": prompt}], stream=True, **kw
    ) as resp:
        chunks = [c for c in resp.parse() if c.choices]
        return dict(resp.headers), [c.choices[0].delta.content or "" for c in chunks], chunks


def test_streamed_auto_judges_a_prefix_then_streams_the_local_answer(fake, tmp_path) -> None:
    escalation = "  escalation: {min_mean_logprob: -100.0, prefix_tokens: 3}\n"
    with start(fake, tmp_path, escalation) as server:
        fake.reset()
        headers, parts, chunks = stream_text(server, CLASSIFY, max_tokens=12, temperature=0)
        assert headers["x-router-tier"] == "local" and "x-router-escalated" not in headers
        direct_headers, direct_parts, _ = stream_text(server, CLASSIFY, model=MODEL, max_tokens=12, temperature=0)
        assert direct_headers["x-router-rule"] == "explicit-model"
        # The same greedy answer, token by token (not replayed as one block), with no logprobs leaked.
        assert "".join(parts) == "".join(direct_parts) and len([p for p in parts if p]) > 3
        assert all(c.choices[0].logprobs is None for c in chunks)
        assert len(fake.requests) == 0


def test_a_shaky_prefix_with_the_frontier_down_keeps_the_local_stream(fake, tmp_path) -> None:
    escalation = "  escalation: {min_mean_logprob: -0.0001, prefix_tokens: 3}\n  resilience: {max_retries: 0}\n"
    with start(fake, tmp_path, escalation, model_id="error_500") as server:
        headers, parts, _ = stream_text(server, CLASSIFY, max_tokens=10, temperature=0)
        assert headers["x-router-escalated"] == "confidence" and headers["x-router-fallback"] == "local"
        assert headers["x-router-tier"] == "local" and "".join(parts).strip()


def test_schema_failure_escalates_after_local_retries(fake, tmp_path) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["label"],
    }
    with start(fake, tmp_path, "  escalation: {min_mean_logprob: null, schema_retries: 1}\n") as server:
        fake.reset()
        # 3 tokens cannot hold the object: the grammar-shaped local output is cut off, so it fails the schema.
        raw = ask(
            server,
            CLASSIFY,
            max_tokens=3,
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
        assert raw.headers["x-router-escalated"] == "schema"
        assert fake.requests[-1].body["output_config"]["format"]["schema"] == schema
        # With room to finish, the local answer satisfies the schema and stays local.
        raw = ask(
            server,
            CLASSIFY,
            max_tokens=60,
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
        assert "x-router-escalated" not in raw.headers
        assert json.loads(raw.parse().choices[0].message.content)["label"] in ("positive", "negative")


def test_local_error_escalates(fake, tmp_path) -> None:
    with start(fake, tmp_path, "  escalation: {min_mean_logprob: null, local_timeout_s: 0.001}\n") as server:
        raw = ask(server, CLASSIFY, max_tokens=30)
        assert raw.headers["x-router-escalated"] == "error" and raw.headers["x-router-tier"] == "frontier"


def test_explicit_local_model_never_escalates(fake, tmp_path) -> None:
    with start(fake, tmp_path, "  escalation: {min_mean_logprob: -0.0001}\n") as server:
        raw = ask(server, CLASSIFY, model=MODEL, max_tokens=5)
        assert "x-router-escalated" not in raw.headers and raw.headers["x-router-tier"] == "local"


ADVISOR_RULES = "routing:\n  rules:\n    - {name: review-all, when: {}, tier: advisor}\n"


@pytest.mark.parametrize(("model_id", "verdict"), [("approve", "approved"), ("correct", "corrected")])
def test_advisor_returns_the_approved_draft_or_the_correction(fake, tmp_path, model_id: str, verdict: str) -> None:
    with start(fake, tmp_path, routing=ADVISOR_RULES, model_id=model_id) as server:
        fake.reset()
        raw = ask(server, CLASSIFY, max_tokens=12, temperature=0)
        h = raw.headers
        assert (h["x-router-tier"], h["x-router-advisor"]) == ("advisor", verdict)
        text = raw.parse().choices[0].message.content
        review = fake.requests[-1].body
        assert "Draft answer:" in review["messages"][0]["content"][0]["text"]
        draft = review["messages"][0]["content"][0]["text"].split("Draft answer:\n", 1)[1]
        if verdict == "approved":
            assert text == draft and h["x-router-model"] == MODEL
        else:
            assert text.startswith("CORRECTED:") and h["x-router-model"] == "claude"
        assert int(h["x-router-frontier-tokens"]) > 0 and int(h["x-router-frontier-tokens-from-scratch"]) > 0


def test_advisor_over_the_anthropic_api(fake, tmp_path) -> None:
    with start(fake, tmp_path, routing=ADVISOR_RULES, model_id="approve") as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)
        with client.messages.stream(model="auto", max_tokens=12, messages=[{"role": "user", "content": CLASSIFY}]) as s:
            text = "".join(s.text_stream)
            assert s.response.headers["x-router-advisor"] == "approved"
        assert text
