"""Routing through the real server: config rules decide, headers explain, the dry run agrees."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest

from router.config import load_settings
from tests.conftest import MODEL
from tests.support.server import running

pytestmark = pytest.mark.model

CONFIG = """
routing:
  on_frontier_unavailable: local
  rules:
    - name: classify-local
      when: {task: classification}
      tier: local
    - name: strict-error
      when: {tenant: nobody}
      tier: local
    - name: hard
      when: {score: {gte: 0.6}}
      tier: frontier
"""

HARD = (
    "Debug this Python function. It raises an exception with a traceback when the async lambda returns null.\n"
    "```python\ndef f(x):\n    return await g(x)\n```\nExplain why, prove the fix, refactor the algorithm."
)


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("cfg") / "router.yaml"
    path.write_text(CONFIG)
    with running(load_settings(path, environ={})) as server:
        yield server


def ask(server, prompt: str, model: str = "auto", **kw: object):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=4, **kw
    )


def test_mixed_requests_route_as_configured(routed) -> None:
    cases = [
        ("Classify the sentiment: I love it.", {}, "local", "classify-local", "classification", None),
        (
            "hello there",
            {"extra_body": {"metadata": {"task": "classification"}}},
            "local",
            "classify-local",
            "classification",
            None,
        ),
        (HARD, {}, "local", "hard", "code", "frontier-unavailable"),
        (
            "Extract the date: due 3 May",
            {"extra_headers": {"x-router-task": "extraction"}},
            "local",
            "default",
            "extraction",
            None,
        ),
    ]
    for prompt, kw, tier, rule, task, reason in cases:
        raw = ask(routed, prompt, **kw)
        h = raw.headers
        assert (h["x-router-tier"], h["x-router-rule"], h["x-router-task"]) == (tier, rule, task), prompt
        assert h.get("x-router-reason") == reason
        assert h["x-router-model"] == MODEL
        assert 0.0 <= float(h["x-router-score"]) <= 1.0
        assert raw.parse().model == MODEL
    assert float(ask(routed, HARD).headers["x-router-score"]) >= 0.6


def test_explicit_model_skips_rules(routed) -> None:
    h = ask(routed, HARD, model=MODEL).headers
    assert (h["x-router-rule"], h["x-router-tier"]) == ("explicit-model", "local")


def test_streaming_carries_the_decision_headers(routed) -> None:
    client = openai.OpenAI(base_url=routed.base_url + "/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=[{"role": "user", "content": "Classify: great!"}], max_tokens=3, stream=True
    ) as resp:
        assert resp.headers["x-router-rule"] == "classify-local"
        assert "data: [DONE]" in resp.read().decode()


def test_dry_run_endpoint_matches_the_served_decision(routed) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": HARD}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(routed.base_url + "/v1/route", data=body)) as resp:
        dry = json.loads(resp.read())
    served = ask(routed, HARD).headers
    assert dry["rule"] == served["x-router-rule"] and dry["task"] == served["x-router-task"]
    assert f"{dry['score']:.4f}" == served["x-router-score"]
    assert dry["features"]["model"] == "router-v1" and set(dry["features"]["dense"]) >= {"code", "local_task"}


def test_unknown_model_and_bad_hint_are_openai_errors(routed) -> None:
    with pytest.raises(openai.NotFoundError):
        ask(routed, "hi", model="nope")
    with pytest.raises(openai.BadRequestError) as caught:
        ask(routed, "hi", extra_headers={"x-router-quality": "supreme"})
    assert caught.value.body["param"] == "x-router-quality"


def test_frontier_unavailable_error_is_a_503(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(CONFIG.replace("on_frontier_unavailable: local", "on_frontier_unavailable: error"))
    with running(load_settings(path, environ={})) as server:
        with pytest.raises(openai.InternalServerError) as caught:
            ask(server, HARD)
        assert caught.value.status_code == 503
        assert "no frontier model is configured" in caught.value.body["message"]
        assert ask(server, "Classify the sentiment: I love it.").headers["x-router-tier"] == "local"


def test_cli_route_needs_no_model(tmp_path: Path) -> None:
    body = tmp_path / "req.json"
    body.write_text(json.dumps({"messages": [{"role": "user", "content": HARD}]}))
    out = subprocess.run(
        [sys.executable, "-m", "router.cli", "route", "--file", str(body)], capture_output=True, text=True, check=True
    )
    decision = json.loads(out.stdout)
    assert decision["task"] == "code" and decision["score"] >= decision["threshold"] and decision["rule"] == "learned"
    assert "llama" not in out.stderr.lower()
