"""The `x-router-*` response headers: an Outcome rendered once, at the HTTP edge."""

from __future__ import annotations

from router.outcome import Outcome


def outcome_headers(outcome: Outcome) -> dict[str, str]:
    headers = outcome.decision.headers()  # tier, task, score, rule, model, reason
    if outcome.escalated is not None:
        headers["x-router-escalated"] = outcome.escalated
    if outcome.compressed is not None:
        headers.update(outcome.compressed.headers())
    if outcome.fallback is not None:
        headers["x-router-fallback"] = outcome.fallback
    if outcome.attempts > 1:
        headers["x-router-attempts"] = str(outcome.attempts)
    if outcome.budget_exhausted:
        headers["x-router-budget"] = "exhausted"
    review = outcome.advisor
    if review is not None:
        headers["x-router-advisor"] = review.verdict
        if review.reviewer and review.verdict in ("approved", "corrected"):
            headers["x-router-frontier-tokens"] = str(review.frontier_tokens)
            headers["x-router-frontier-tokens-from-scratch"] = str(review.from_scratch_tokens)
            headers["x-router-reviewer"] = review.reviewer
    cache = outcome.cache
    if cache is not None:
        headers["x-router-cache"] = cache.status
        if cache.similarity is not None:
            headers["x-router-cache-similarity"] = f"{cache.similarity:.4f}"
        if cache.entry_id is not None:
            headers["x-router-cache-entry"] = cache.entry_id
    return headers
