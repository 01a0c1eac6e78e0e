"""Retries, fallbacks, throttles and circuit breakers for the frontier tier, all before the first byte reaches
the client.

`first_chunk` is the whole policy in one place. Each upstream failure falls in one of four classes, and the class
alone decides what happens (docs/resilience.md has the table, tests/integration/test_resilience.py tests each row):

    request    400 / 413 / 422: the request is at fault; passed back at once, never retried, no fallback
    refused    401 / 403 / 404: the router's key or model id is wrong there; no retry, next provider
    throttle   429 / 529 / 503 (rate limited, overloaded): the upstream is healthy but says "later". The provider
               cools down for its Retry-After / retry-after-ms (or a backoff when it gives none); while it cools,
               no request is sent to it: the next provider serves, or, with none, the client gets the throttle
               (429, or 529 on the Anthropic API / 503 on the OpenAI API) with Retry-After. Never opens a breaker.
    unhealthy  5xx, connect errors, timeouts, a broken stream: retried with backoff and jitter, then the next
               provider; each one counts towards the provider's breaker.

A model with `requests_per_minute` is also paced by the router itself, with a token bucket per model: when it is
empty no request is sent; the next provider serves at once, or the client gets 429 with Retry-After (a short
wait within `backoff_max_s` is waited out when there is no other provider). Like a throttle, it never opens a
breaker.

For a non-streaming request the whole answer is collected inside the attempt: nothing reaches its client until
the end, so a failure after the upstream's first chunk is still retried or sent to a fallback. A streaming
request's answer belongs to the client from its first chunk; a later failure ends it in-band.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from router.accounting.limits import TokenBucket
from router.config import ResilienceSettings
from router.errors import CircuitOpen, Overloaded, RateLimited, RouterError, Timeout, UpstreamError
from router.frontier.base import Provider
from router.types import ChatRequest, Chunk

Failure = Literal["request", "refused", "throttle", "unhealthy"]


def classify(exc: RouterError) -> Failure:
    if isinstance(exc, (RateLimited, Overloaded)):
        return "throttle"
    if not exc.retryable:
        return "request" if exc.client_fault else "refused"
    return "unhealthy"


@dataclass
class Breaker:
    """Per-provider circuit breaker: open after N consecutive unhealthy failures, one half-open probe after a
    cooldown. Throttles and the client's own errors neither count nor reset it."""

    failures_to_open: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def retry_after(self) -> float:
        """Seconds until the next half-open probe may run."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock())

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True  # exactly one probe at a time
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def neutral(self) -> None:
        """An answer that says nothing about health (a throttle): the probe slot is free again, nothing else."""
        self.probing = False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()


@dataclass
class Throttle:
    """Per-provider cool-down after a 429 / 529: no request goes upstream until `until`.

    The wait is the upstream's Retry-After when it sends one; without one, an exponential backoff over the
    throttles in a row (base · 2^n, at most `max_s`). The next success ends the run of throttles.
    """

    base_s: float
    max_s: float
    until: float = 0.0
    in_a_row: int = 0
    last: RouterError | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock())

    def note(self, exc: RouterError) -> None:
        wait = exc.retry_after
        if wait is None or wait <= 0:
            wait = min(self.max_s, self.base_s * 2**self.in_a_row)
        self.in_a_row += 1
        self.until = max(self.until, self.clock() + wait)
        self.last = exc

    def success(self) -> None:
        self.in_a_row = 0

    def error(self) -> RouterError:
        """The throttle as the client sees it: the upstream's kind, Retry-After until the cool-down ends."""
        last = self.last
        cls = type(last) if isinstance(last, (RateLimited, Overloaded)) else RateLimited
        message = last.message if last is not None else "the frontier model is rate limited"
        return cls(message, retry_after=max(self.remaining(), 0.001))


@dataclass(slots=True)
class Attempted:
    provider: str
    error: str


@dataclass(slots=True)
class Started:
    """A provider's answer whose first chunk has arrived (a non-streaming request's: the whole answer)."""

    provider: Provider
    first: Chunk
    rest: AsyncIterator[Chunk]
    attempts: list[Attempted]


class Resilience:
    def __init__(self, settings: ResilienceSettings, providers: Sequence[Provider]) -> None:
        self.settings = settings
        self.breakers = {p.name: Breaker(settings.breaker_failures, settings.breaker_cooldown_s) for p in providers}
        self.throttles = {p.name: Throttle(settings.backoff_base_s, settings.backoff_max_s) for p in providers}
        self.pacers = {p.name: _pacer(rpm) for p in providers if (rpm := p.settings.requests_per_minute)}

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = random.uniform(0, min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**attempt))
        return max(delay, retry_after or 0.0)

    def reset(self) -> None:
        """Every breaker closed and every cool-down over (tests, and an operator's manual reset)."""
        for breaker in self.breakers.values():
            breaker.success()
        for throttle in self.throttles.values():
            throttle.until, throttle.in_a_row, throttle.last = 0.0, 0, None
        for name, bucket in self.pacers.items():
            self.pacers[name] = _pacer(bucket.rate * 60)

    async def first_chunk(self, request: ChatRequest, chain: Sequence[Provider]) -> Started:
        """The first provider in `chain` that starts answering. Raises the last error if none does."""
        loop = asyncio.get_running_loop()
        attempts: list[Attempted] = []
        last: RouterError | None = None
        for index, provider in enumerate(chain):
            breaker, throttle = self.breakers[provider.name], self.throttles[provider.name]
            has_next = index + 1 < len(chain)
            for attempt in range(self.settings.max_retries + 1):
                wait = throttle.remaining()
                if wait > 0:
                    # Cooling down: a fallback serves at once; without one, wait if it is short and in time.
                    short = wait <= self.settings.backoff_max_s
                    in_time = request.deadline is None or loop.time() + wait < request.deadline
                    if (attempt == 0 and has_next) or not (short and in_time):
                        attempts.append(Attempted(provider.name, "cooling down"))
                        last = throttle.error()
                        break
                    await asyncio.sleep(wait)
                paced = await self._pace(provider.name, request, may_wait=not has_next)
                if paced > 0:
                    attempts.append(Attempted(provider.name, "paced"))
                    last = RateLimited(
                        f"frontier model {provider.name!r} is at its requests_per_minute", retry_after=paced
                    )
                    break
                if not breaker.allow():
                    attempts.append(Attempted(provider.name, "circuit open"))
                    last = last or CircuitOpen(
                        f"frontier model {provider.name!r} is unavailable (circuit open)",
                        retry_after=max(breaker.retry_after(), 0.001),
                    )
                    break
                try:
                    return await self._start(provider, request, attempts)
                except RouterError as exc:
                    attempts.append(Attempted(provider.name, exc.code or exc.type))
                    kind = classify(exc)
                    if kind == "request":
                        breaker.neutral()
                        raise  # another provider would say the same
                    if kind == "refused":
                        breaker.neutral()
                        last = exc
                        break
                    if kind == "throttle":
                        breaker.neutral()
                        throttle.note(exc)
                        last = throttle.error()
                        continue  # the next attempt waits for the cool-down (or falls through to the next provider)
                    breaker.failure()
                    last = exc
                    if attempt == self.settings.max_retries:
                        break
                    delay = self.backoff(attempt, exc.retry_after)
                    if delay > self.settings.backoff_max_s:
                        break  # told to wait longer than we would: try the next provider instead
                    if request.deadline is not None and loop.time() + delay >= request.deadline:
                        raise Timeout("the request's deadline left no time to retry the frontier") from None
                    await asyncio.sleep(delay)
        assert last is not None
        raise last

    async def _pace(self, name: str, request: ChatRequest, may_wait: bool) -> float:
        """0 once the model's request bucket (if it has one) gave this attempt a slot; otherwise the seconds until
        it would, unless `may_wait` and that wait is short and within the deadline: then it is waited out."""
        bucket = self.pacers.get(name)
        if bucket is None:
            return 0.0
        loop = asyncio.get_running_loop()
        while (wait := bucket.take(1)) > 0:
            in_time = request.deadline is None or loop.time() + wait < request.deadline
            if not (may_wait and wait <= self.settings.backoff_max_s and in_time):
                return wait
            await asyncio.sleep(wait)
        return 0.0

    async def _start(self, provider: Provider, request: ChatRequest, attempts: list[Attempted]) -> Started:
        stream = provider.generate(request)
        timeout = provider.settings.first_token_timeout_s
        if request.deadline is not None:
            timeout = min(timeout, request.deadline - asyncio.get_running_loop().time())
        try:
            # asyncio.timeout, not wait_for: no extra task (and scheduling hop) on the first-token path.
            async with asyncio.timeout(max(timeout, 0.001)):
                first = await anext(stream)
        except TimeoutError:
            await stream.aclose()  # type: ignore[attr-defined]
            raise Timeout(f"frontier model {provider.name!r} sent no first token in time") from None
        except StopAsyncIteration:
            raise UpstreamError(f"frontier model {provider.name!r} sent an empty answer") from None
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        if not request.stream:
            # Nothing reaches a non-streaming client before the end: collect it all here, so a failure after
            # the upstream's first chunk is still this attempt's and can be retried or sent to a fallback.
            try:
                rest = [chunk async for chunk in stream]
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            self._healthy(provider.name)
            return Started(provider, first, _replay(rest), attempts)
        self._healthy(provider.name)
        return Started(provider, first, self._watched(provider.name, stream), attempts)

    def _healthy(self, name: str) -> None:
        self.breakers[name].success()
        self.throttles[name].success()

    async def _watched(self, name: str, stream: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """A started stream, passed on as it is; a failure in it still tells the breaker or the throttle."""
        try:
            async for chunk in stream:
                yield chunk
        except RouterError as exc:
            kind = classify(exc)
            if kind == "unhealthy":
                self.breakers[name].failure()
            elif kind == "throttle":
                self.throttles[name].note(exc)
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


def _pacer(requests_per_minute: float) -> TokenBucket:
    """A full bucket of one minute's requests, refilled continuously (the shape Anthropic documents for its own
    limits), so the router never sends more than the upstream allows in any minute."""
    return TokenBucket(rate=requests_per_minute / 60, capacity=max(1.0, requests_per_minute))


async def _replay(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk
