from __future__ import annotations

from pathlib import Path

import pytest

from router.config import ConfigError, Settings, load_settings
from router.errors import InvalidRequest, NotFound, Unavailable
from router.http.openai import parse_chat_request
from router.routing.policy import RoutingPolicy
from router.routing.rules import RuleError, compile_when

RULES = """
routing:
  default_tier: local
  threshold: 1.0
  rules:
    - name: classify-local
      when: {task: classification}
      tier: local
    - name: long-synthesis
      when: {task: synthesis, context_tokens: {gt: 10000}}
      tier: frontier
    - name: nuanced-writing
      when: {task: writing, quality: high}
      tier: frontier
    - name: tenant-acme-advisor
      when: {tenant: acme, has_response_format: true}
      tier: advisor
"""


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "router.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def request(prompt: str, **body: object) -> object:
    headers = body.pop("headers", {})
    return parse_chat_request({"model": "auto", "messages": [{"role": "user", "content": prompt}], **body}, headers)


def test_rules_fire_in_order(tmp_path: Path) -> None:
    policy = RoutingPolicy(settings_from(tmp_path, RULES), frontier_models=("claude",))
    cases = [
        (request("Is this spam? 'WIN A FREE PHONE'", metadata={"task": "classification"}), "local", "classify-local"),
        (
            request("Summarise these documents. " + "word " * 12000, metadata={"task": "synthesis"}),
            "frontier",
            "long-synthesis",
        ),
        (request("Summarise these documents.", metadata={"task": "synthesis"}), "local", "default"),
        (
            request("A poem about spring", metadata={"task": "writing", "quality": "high"}),
            "frontier",
            "nuanced-writing",
        ),
        (request("A poem about spring", metadata={"task": "writing"}), "local", "default"),
        (
            request("What is 2+2?", headers={"x-router-quality": "high", "x-router-task": "writing"}),
            "frontier",
            "nuanced-writing",
        ),
    ]
    for req, tier, rule in cases:
        decision = policy.decide(req)
        assert (decision.tier, decision.rule) == (tier, rule), (req.messages[0].content[:40], decision)


def test_an_operator_score_rule_on_a_complex_prompt(tmp_path: Path) -> None:
    rule = "    - name: hard\n      when: {score: {gte: 0.6}}\n      tier: frontier\n"
    text = f"routing:\n  threshold: 1.0\n  rules:\n{rule}"
    policy = RoutingPolicy(settings_from(tmp_path, text), frontier_models=("claude",))
    hard = (
        "Debug this Python function. It raises an exception with a traceback when the async lambda returns null.\n"
        "```python\ndef f(x):\n    return await g(x)\n```\n```\nTraceback (most recent call last): ...\n```\n"
        "Explain why, prove the fix is correct, and refactor the algorithm for memory complexity."
    )
    decision = policy.decide(request(hard))
    assert decision.task == "code" and decision.task_source == "inferred"
    assert decision.score >= 0.6 and (decision.tier, decision.rule, decision.model) == ("frontier", "hard", "claude")
    easy = policy.decide(request("Classify the sentiment of this review as positive or negative: I love it."))
    assert easy.score < 0.3 and (easy.tier, easy.rule) == ("local", "default")


def test_aliases_explicit_models_and_unknown(tmp_path: Path) -> None:
    policy = RoutingPolicy(settings_from(tmp_path, RULES))
    name = policy.local_default
    explicit = policy.decide(parse_chat_request({"model": name, "messages": [{"role": "user", "content": "x"}]}))
    assert (explicit.tier, explicit.model, explicit.rule) == ("local", name, "explicit-model")
    local = policy.decide(parse_chat_request({"model": "local", "messages": [{"role": "user", "content": "x"}]}))
    assert (local.tier, local.rule) == ("local", "alias:local")
    frontier = policy.decide(parse_chat_request({"model": "frontier", "messages": [{"role": "user", "content": "x"}]}))
    assert (frontier.tier, frontier.reason) == ("local", "frontier-unavailable")
    with pytest.raises(NotFound):
        policy.decide(parse_chat_request({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}))


def test_frontier_unavailable_error_mode(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, RULES.replace("default_tier: local", "on_frontier_unavailable: error"))
    policy = RoutingPolicy(settings)
    with pytest.raises(Unavailable, match="no frontier model is configured"):
        policy.decide(request("x", metadata={"task": "writing", "quality": "high"}))
    assert policy.decide(request("Is this spam?", metadata={"task": "classification"})).tier == "local"


def test_default_rules_route_by_task() -> None:
    policy = RoutingPolicy(Settings(), frontier_models=("claude",))
    assert policy.decide(request("Extract the date", metadata={"task": "extraction"})).rule == "local-task-hint"
    assert policy.decide(request("Plan it", metadata={"task": "planning"})).tier == "frontier"
    assert policy.decide(request("Extract the date", metadata={"task": "extraction", "quality": "high"})).tier == (
        "frontier"
    )


@pytest.mark.parametrize(
    ("hints", "param"),
    [
        ({"metadata": {"task": "dancing"}}, "metadata.task"),
        ({"headers": {"x-router-task": "x"}}, "x-router-task"),
        ({"metadata": {"quality": "ultra"}}, "metadata.quality"),
        ({"headers": {"x-router-quality": "best"}}, "x-router-quality"),
    ],
)
def test_bad_hints_are_400s_naming_the_field(hints: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request("x", **hints)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"scroe": 1}, "unknown field 'scroe'"),
        ({"score": {"bigger": 1}}, "unknown operator 'bigger'"),
        ({"task": {"gt": "code"}}, "needs a numeric field"),
        ({"task": "dancing"}, "'dancing' is not one of"),
        ({"context_tokens": "many"}, "is not a int"),
        ({"task": []}, "empty list"),
        ({"score": {}}, "empty test"),
        ({"has_tools": "yes"}, "is not a bool"),
    ],
)
def test_bad_conditions_are_rejected(when: dict, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        compile_when(when)


def test_bad_rule_fails_start_up_naming_the_rule(tmp_path: Path) -> None:
    text = "routing:\n  rules:\n    - name: my-rule\n      when: {score: {above: 0.5}}\n      tier: frontier\n"
    with pytest.raises(ConfigError) as caught:
        settings_from(tmp_path, text)
    assert "routing.rules.0" in str(caught.value) and "'my-rule'" in str(caught.value)
    assert "above" in str(caught.value)
    with pytest.raises(ConfigError, match="tier"):
        settings_from(tmp_path, "routing:\n  rules:\n    - name: r\n      tier: cloud\n")
