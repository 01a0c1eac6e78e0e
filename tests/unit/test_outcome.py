"""The outcome is a value: its fields decide caching and accounting, and the HTTP edge renders them to headers."""

from __future__ import annotations

from router.frontier.compression import Report
from router.http.headers import outcome_headers
from router.outcome import AdvisorReview, CacheStatus, Outcome
from router.routing.policy import Decision
from router.types import ChatRequest, Chunk, Message


async def _empty():  # pragma: no cover - never iterated
    if False:
        yield Chunk()


def _outcome(**fields) -> Outcome:
    decision = Decision("local", "small", "default", "classification", "inferred", 0.12345, 10)
    outcome = Outcome("small", decision, Chunk(text="hi"), _empty())
    for k, v in fields.items():
        setattr(outcome, k, v)
    return outcome


def test_plain_outcome_renders_the_decision_only() -> None:
    h = outcome_headers(_outcome())
    assert h == {
        "x-router-tier": "local",
        "x-router-task": "classification",
        "x-router-score": "0.1235",
        "x-router-rule": "default",
        "x-router-model": "small",
    }
    assert not _outcome().degraded


def test_events_render_to_their_headers() -> None:
    report = Report(900, 300, 2, 6, "extractive", "smollm2", "minilm", 0.01)
    h = outcome_headers(
        _outcome(escalated="confidence", fallback="local", attempts=3, compressed=report, budget_exhausted=True)
    )
    assert h["x-router-escalated"] == "confidence"
    assert h["x-router-fallback"] == "local"
    assert h["x-router-attempts"] == "3"
    assert h["x-router-compressed"] == "900->300 tokens"
    assert h["x-router-compression"].startswith("extractive; chunks 2/6")
    assert h["x-router-budget"] == "exhausted"


def test_cache_and_advisor_fields() -> None:
    review = AdvisorReview("corrected", "big", 40, 120)
    cache = CacheStatus("hit-semantic", 0.97, "e1")
    h = outcome_headers(_outcome(advisor=review, cache=cache))
    assert h["x-router-advisor"] == "corrected"
    assert (h["x-router-frontier-tokens"], h["x-router-frontier-tokens-from-scratch"]) == ("40", "120")
    assert h["x-router-reviewer"] == "big"
    assert (h["x-router-cache"], h["x-router-cache-similarity"], h["x-router-cache-entry"]) == (
        "hit-semantic",
        "0.9700",
        "e1",
    )
    assert cache.hit and not CacheStatus("miss").hit
    unreviewed = outcome_headers(_outcome(advisor=AdvisorReview("unreviewed")))
    assert unreviewed["x-router-advisor"] == "unreviewed" and "x-router-reviewer" not in unreviewed


def test_stand_in_answers_are_degraded() -> None:
    assert _outcome(fallback="local").degraded
    assert _outcome(fallback="other-frontier").degraded
    assert _outcome(budget_exhausted=True).degraded
    assert _outcome(advisor=AdvisorReview("unreviewed")).degraded
    assert _outcome(advisor=AdvisorReview("budget-exhausted")).degraded
    assert not _outcome(advisor=AdvisorReview("approved", "big", 5, 50)).degraded
    assert not _outcome(escalated="error").degraded  # an escalated answer is the frontier's own


def test_prompt_text_and_estimate_are_computed_once_and_reset_by_replace() -> None:
    from dataclasses import replace

    request = ChatRequest(model="m", messages=[Message("system", "be brief"), Message("user", "hello there")])
    assert request.prompt_text == "be brief\nhello there"
    first = request.prompt_tokens
    assert first > 0 and request.prompt_tokens == first
    shorter = replace(request, messages=[Message("user", "hi")])
    assert shorter.prompt_text == "hi" and shorter.prompt_tokens < first
