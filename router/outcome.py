"""What happened to one chat request, as a value.

The pipeline returns an `Outcome`; accounting, metrics, the log line and the cache read its fields. Only the HTTP
layer turns it into `x-router-*` headers (router/http/headers.py), once, when the response starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.accounting.budgets import Reservation
from router.routing.policy import Decision
from router.types import Chunk, Completion, Usage

if TYPE_CHECKING:  # compression imports the engines' tokenizer; the outcome only names its report
    from router.frontier.compression import Report


@dataclass(slots=True)
class AdvisorReview:
    """The advisor's verdict on a local draft and what the review cost in frontier tokens."""

    verdict: str  # approved | corrected | unreviewed | budget-exhausted
    reviewer: str = ""
    frontier_tokens: int = 0
    from_scratch_tokens: int = 0  # what the frontier would have spent answering alone


@dataclass(slots=True)
class CacheStatus:
    status: str  # hit-exact | hit-semantic | miss | bypass
    similarity: float | None = None
    entry_id: str | None = None

    @property
    def hit(self) -> bool:
        return self.status.startswith("hit")


@dataclass(slots=True)
class Outcome:
    """The decision as served, the answer's first chunk (already arrived) and the rest, and what happened on the way:
    escalation, fallback, budget and advisor events, the cache's status, and the frontier budget hold."""

    model: str  # the model that serves
    decision: Decision  # as served: tier and model after any fallback
    first: Chunk
    rest: AsyncIterator[Chunk]
    escalated: str | None = None  # why a routed local answer went to the frontier: error | confidence | schema | …
    fallback: str | None = None  # what served instead of the decided target: "local" or another frontier model
    budget_exhausted: bool = False  # the frontier budget was spent: the local tier answered
    compressed: Report | None = None  # what local compression did (tokens before → after, chunks kept)
    attempts: int = 1  # frontier attempts (retries and fallbacks) before the first byte
    advisor: AdvisorReview | None = None
    cache: CacheStatus | None = None  # None: no cache configured
    reservation: Reservation | None = None  # a frontier budget hold, settled when the answer ends
    frontier_usage: Usage | None = None  # advisor: what the frontier review cost

    def chunks(self) -> AsyncIterator[Chunk]:
        return prepend(self.first, self.rest)

    @property
    def degraded(self) -> bool:
        """A fallback's, a spent budget's or an unreviewed draft's answer stands in for the decided one: served,
        never cached under the decided tier's key."""
        unreviewed = self.advisor is not None and self.advisor.verdict in ("unreviewed", "budget-exhausted")
        return self.fallback is not None or self.budget_exhausted or unreviewed

    @property
    def headers(self) -> dict[str, str]:
        """The `x-router-*` headers this outcome renders to (router/http/headers.py; kept here for callers that
        drive the pipeline directly, like tests)."""
        from router.http.headers import outcome_headers

        return outcome_headers(self)


async def _replay(chunks: Iterable[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


async def prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    yield first
    async for chunk in rest:
        yield chunk


def replayed(model: str, decision: Decision, completion: Completion) -> Outcome:
    """An Outcome for an answer already complete (buffered local answer, advisor verdict, cache hit)."""
    chunks = completion.chunks()
    return Outcome(model, decision, chunks[0], _replay(chunks[1:]))
