"""The request flow, top to bottom: route → execute on the decided tier → hand back a stream of chunks.

    decide (policy, microseconds)
    cache lookup: exact key, then a paraphrase within the same hard key → a hit is replayed, no model runs
      ├─ local     generate; for `auto` requests judge the answer first and escalate to the frontier when it
      │            errors, is unsure (token logprobs) or breaks its JSON schema
      ├─ frontier  compress long context locally → stream from the provider with retries, fallbacks and
      │            breakers (before the first byte only) → last resort: the local tier
      └─ advisor   local draft → frontier review → the approved draft or the frontier's correction

`Pipeline.chat` returns an `Outcome` (router/outcome.py): the decision as served, what happened on the way
(escalation, fallback, budget, advisor and cache events, as fields; the HTTP layer renders them to headers), and
the answer, whose first chunk has already arrived: anything that fails before the first token becomes a proper
HTTP error; after that the answer streams, and a failure ends it with an in-band error. An answer that streams to
its end is stored in the cache afterwards (router/cache/store.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from router.accounting.service import Accounting, BudgetExhausted
from router.cache import ResponseCache
from router.config import Settings
from router.engines.base import Engine
from router.errors import InvalidRequest, PermissionDenied, RateLimited, RouterError, Timeout
from router.frontier import advisor, escalation
from router.frontier.compression import Compressor
from router.frontier.tier import FrontierTier
from router.outcome import AdvisorReview, CacheStatus, Outcome, prepend, replayed
from router.registry import ModelRegistry
from router.routing.policy import Decision, RoutingPolicy
from router.types import ChatRequest, Chunk, Completion, Message, SamplingParams, Usage


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        policy: RoutingPolicy,
        frontier: FrontierTier,
        cache: ResponseCache | None = None,
        accounting: Accounting | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.policy = policy
        self.frontier = frontier
        self.escalation = settings.frontier.escalation
        self.cache = cache
        self.accounting = accounting
        metrics = accounting.metrics.registry if accounting is not None else None
        self.compressor = Compressor.build(settings, policy.local_default, self._summarise, metrics)

    async def chat(self, request: ChatRequest) -> Outcome:
        decision = self._permitted(request, self.policy.decide(request))
        if self.cache is None:
            return await self._execute(request, decision)
        lookup = await self.cache.lookup(request, decision)
        status = CacheStatus(lookup.status, lookup.similarity, lookup.entry.id if lookup.entry is not None else None)
        if lookup.entry is not None:
            model = lookup.entry.model
            outcome = replayed(model, replace(decision, model=model), lookup.completion())
            outcome.cache = status
            return outcome
        outcome = await self._execute(request, decision)
        if lookup.store and not outcome.degraded:  # a stand-in answer is never cached under the decided key
            outcome.rest = self.cache.recording(outcome.first, outcome.rest, lookup, outcome.model)
        outcome.cache = status
        return outcome

    def _permitted(self, request: ChatRequest, decision: Decision) -> Decision:
        """The tenant's allowed tiers: a routed decision falls back to local, an explicit ask is refused."""
        if decision.tier in request.allowed_tiers:
            return decision
        if decision.rule.startswith(("explicit", "alias")) or "local" not in request.allowed_tiers:
            raise PermissionDenied(f"this key may not use the {decision.tier} tier", param="model")
        return replace(decision, tier="local", model=self.policy.local_default, reason="tenant-policy")

    async def _execute(self, request: ChatRequest, decision: Decision) -> Outcome:
        if decision.tier == "frontier":
            return await self._frontier(request, decision)
        if self._local_down(request, decision):
            # The local engine crashed and is restarting (or still loading): a routed request goes to the
            # frontier rather than failing; an explicit local request gets the 503 with Retry-After.
            return await self._escalate(request, decision, "local-down", None)
        if decision.tier == "advisor":
            return await self._advisor(request, decision)
        return await self._local(request, decision)

    # -- local tier ----------------------------------------------------------------------------------------------

    async def _local(self, request: ChatRequest, decision: Decision) -> Outcome:
        model = decision.model or self.policy.local_default
        if request.tools:
            raise InvalidRequest(
                f"tools need a frontier model; {model!r} is local (route with model 'auto' or 'frontier')",
                param="tools",
            )
        if request.sampling.top_logprobs:
            raise InvalidRequest("top_logprobs is not supported by local models", param="top_logprobs")
        may_escalate = self._may_escalate(decision)
        if may_escalate and request.stream and self.escalation.streaming == "prefix" and not _needs_whole(request):
            return await self._local_prefix(request, decision, model)
        if not may_escalate or (request.stream and self.escalation.streaming == "passthrough"):
            try:
                engine = self.registry.get(model)
                return await self._start(model, decision, engine.generate(request))
            except RouterError as exc:
                if may_escalate and self._escalates_on(exc):
                    return await self._escalate(request, decision, "error", None)
                raise
        # Judge the whole local answer before the first byte: a bad one is replaced, never half-sent.
        try:
            engine = self.registry.get(model)
            answer = await self._local_answer(engine, request, want_logprobs=True)
        except RouterError as exc:
            if self._escalates_on(exc):
                return await self._escalate(request, decision, "error", None)
            raise
        if escalation.low_confidence(answer, self.escalation):
            return await self._escalate(request, decision, "confidence", answer)
        if escalation.schema_failure(answer, request.response_format):
            for _ in range(self.escalation.schema_retries):
                answer = await self._local_answer(engine, request, want_logprobs=True)
                if not escalation.schema_failure(answer, request.response_format):
                    break
            else:
                return await self._escalate(request, decision, "schema", answer)
        if not request.sampling.logprobs:
            answer.logprobs = answer.logprob_texts = None
        return replayed(model, decision, answer)

    async def _local_prefix(self, request: ChatRequest, decision: Decision, model: str) -> Outcome:
        """Stream a routed local answer after judging only its first tokens: low time to first token, and a
        shaky start is still replaced by the frontier before anything reaches the client."""
        try:
            engine = self.registry.get(model)
            judged = engine.capabilities.logprobs and not request.sampling.logprobs
            local = replace(request, sampling=replace(request.sampling, logprobs=True)) if judged else request
            stream = engine.generate(local)
        except RouterError as exc:
            if self._escalates_on(exc):
                return await self._escalate(request, decision, "error", None)
            raise
        held: list[Chunk] = []
        try:
            async with asyncio.timeout(self.escalation.local_timeout_s):
                async for chunk in stream:
                    held.append(chunk)
                    if chunk.finish_reason is not None or len(held) >= self.escalation.prefix_tokens:
                        break
        except (RouterError, TimeoutError) as exc:
            await stream.aclose()  # type: ignore[attr-defined]
            if isinstance(exc, RouterError) and not self._escalates_on(exc):
                raise
            if isinstance(exc, TimeoutError) and not self.escalation.on_error:
                raise Timeout("the local model did not answer in time") from None
            return await self._escalate(request, decision, "error", None)
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        logprobs = [c.logprob for c in held if c.logprob is not None]
        if logprobs and escalation.low_confidence(Completion("", "stop", Usage(), logprobs), self.escalation):
            try:
                outcome = await self._escalate(request, decision, "confidence", None)
            except RouterError:
                # The frontier is down too: the local answer we have started beats an error.
                outcome = Outcome(model, decision, *_resume(held, stream, judged))
                outcome.escalated, outcome.fallback = "confidence", "local"
                return outcome
            await stream.aclose()  # type: ignore[attr-defined]
            return outcome
        if not held:
            held.append(Chunk(finish_reason="stop"))
        return Outcome(model, decision, *_resume(held, stream, judged))

    def _local_down(self, request: ChatRequest, decision: Decision) -> bool:
        model = decision.model or self.policy.local_default
        if model not in self.registry.engines or self.registry.is_up(model):
            return False
        routed = decision.rule not in ("explicit-model", "alias:local")
        return routed and bool(self.frontier.names) and "frontier" in request.allowed_tiers and not request.tools

    def _may_escalate(self, decision: Decision) -> bool:
        # Only requests the router chose to serve locally: an explicit model or the `local` alias is the
        # client's choice, and a frontier decision already served locally has nowhere better to go.
        return (
            self.escalation.enabled
            and bool(self.frontier.names)
            and decision.rule not in ("explicit-model", "alias:local")
            and decision.reason is None
        )

    def _escalates_on(self, exc: RouterError) -> bool:
        return self.escalation.on_error and not isinstance(exc, InvalidRequest)

    async def _local_answer(self, engine: Engine, request: ChatRequest, want_logprobs: bool = False) -> Completion:
        logprobs = want_logprobs and engine.capabilities.logprobs
        local = replace(request, sampling=replace(request.sampling, logprobs=request.sampling.logprobs or logprobs))
        stream = engine.generate(local)
        try:
            async with asyncio.timeout(self.escalation.local_timeout_s):
                return await Completion.gather(stream)
        except TimeoutError:
            raise Timeout("the local model did not answer in time") from None
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _escalate(self, request: ChatRequest, decision: Decision, why: str, answer: Completion | None) -> Outcome:
        local_model = decision.model or self.policy.local_default
        escalated = replace(decision, tier="frontier", model=self.frontier.names[0])
        try:
            outcome = await self._frontier(request, escalated, allow_local=answer is None)
        except RouterError:
            if answer is None:
                raise
            # The frontier is down too: the local answer we have beats an error.
            answer.logprobs = None
            outcome = replayed(local_model, decision, answer)
            outcome.fallback = "local"
        outcome.escalated = why
        return outcome

    # -- frontier tier -------------------------------------------------------------------------------------------

    async def _frontier(self, request: ChatRequest, decision: Decision, allow_local: bool = True) -> Outcome:
        model = decision.model or self.frontier.names[0]
        request, compressed = await self.compressor.compress(request)
        outcome = await self._frontier_call(request, decision, model, allow_local)
        outcome.compressed = compressed or None
        return outcome

    async def _frontier_call(self, request: ChatRequest, decision: Decision, model: str, allow_local: bool) -> Outcome:
        try:
            reservation = await self.accounting.reserve(request, model) if self.accounting else None
        except BudgetExhausted as exc:
            if request.budget_exhausted != "local" or not allow_local or request.tools:
                raise RateLimited(str(exc), code="budget_exhausted") from None
            local = replace(decision, tier="local", model=self.policy.local_default, reason="budget-exhausted")
            outcome = await self._local_stream(request, local)
            outcome.budget_exhausted = True
            return outcome
        try:
            started = await self.frontier.stream(request, model)
        except RouterError as exc:
            if self.accounting is not None:
                self.accounting.release(reservation)  # nothing was generated
            if not (allow_local and exc.retryable and self.frontier.fallback_to_local(model)) or request.tools:
                raise
            local = replace(decision, tier="local", model=self.policy.local_default)
            outcome = await self._local_stream(request, local)
            outcome.fallback = "local"
            return outcome
        served = started.provider.name
        outcome = Outcome(served, replace(decision, model=served), started.first, started.rest, reservation=reservation)
        outcome.fallback = served if served != model else None
        outcome.attempts = len(started.attempts) + 1
        return outcome

    async def _local_stream(self, request: ChatRequest, decision: Decision) -> Outcome:
        model = decision.model or self.policy.local_default
        return await self._start(model, decision, self.registry.get(model).generate(request))

    async def _summarise(self, text: str, max_tokens: int) -> str:
        from router.frontier.compression import SUMMARY_INSTRUCTIONS

        engine = self.registry.get(self.policy.local_default)
        request = ChatRequest(
            model=self.policy.local_default,
            messages=[Message("system", SUMMARY_INSTRUCTIONS), Message("user", text)],
            sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
        )
        return (await self._local_answer(engine, request)).text

    # -- advisor -------------------------------------------------------------------------------------------------

    async def _advisor(self, request: ChatRequest, decision: Decision) -> Outcome:
        local_model = self.policy.local_default
        engine = self.registry.get(local_model)
        try:
            draft = await self._local_answer(engine, request)
        except RouterError as exc:
            if self._escalates_on(exc):
                return await self._escalate(request, decision, "error", None)
            raise
        reviewer = self.settings.frontier.advisor.review_model or self.frontier.names[0]
        review_req = advisor.review_request(request, draft, self.settings.frontier.advisor, reviewer)
        reservation = None
        try:
            if self.accounting is not None:
                reservation = await self.accounting.reserve(review_req, reviewer)
            started = await self.frontier.stream(review_req, reviewer)
            review = await Completion.gather(prepend(started.first, started.rest))
        except (RouterError, BudgetExhausted) as exc:
            if self.accounting is not None:
                self.accounting.release(reservation)
            outcome = replayed(local_model, replace(decision, model=local_model), draft)
            outcome.advisor = AdvisorReview("budget-exhausted" if isinstance(exc, BudgetExhausted) else "unreviewed")
            return outcome
        result = advisor.verdict(request, draft, review)
        served = local_model if result.approved else started.provider.name
        outcome = replayed(served, replace(decision, model=served), result.answer)
        outcome.advisor = AdvisorReview(
            "approved" if result.approved else "corrected",
            started.provider.name,
            result.frontier_tokens,
            result.from_scratch_tokens,
        )
        outcome.reservation, outcome.frontier_usage = reservation, review.usage
        return outcome

    # -- shared --------------------------------------------------------------------------------------------------

    async def _start(self, model: str, decision: Decision, stream: AsyncIterator[Chunk]) -> Outcome:
        """Wait for the first chunk, so failures before any byte is sent become proper HTTP errors."""
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = Chunk(finish_reason="stop")
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        return Outcome(model, decision, first, stream)


def _needs_whole(request: ChatRequest) -> bool:
    """A schema can only be checked on the whole answer: such streams are still buffered."""
    return request.response_format.type != "text"


def _resume(held: list[Chunk], rest: AsyncIterator[Chunk], strip: bool) -> tuple[Chunk, AsyncIterator[Chunk]]:
    """The held prefix, then the rest of the live stream (logprobs the client did not ask for removed)."""

    async def chained() -> AsyncIterator[Chunk]:
        for chunk in held[1:]:
            yield _stripped(chunk) if strip else chunk
        async for chunk in rest:
            yield _stripped(chunk) if strip else chunk

    return (_stripped(held[0]) if strip else held[0]), chained()


def _stripped(chunk: Chunk) -> Chunk:
    chunk.logprob = None
    return chunk
