"""Retries, fallbacks and circuit breakers for the frontier tier, all before the first byte reaches the client.

`first_chunk` is the whole policy in one place: for each provider in the fallback chain, skip it if its breaker
is open, else try it up to `max_retries + 1` times, waiting with exponential backoff and full jitter (or the
provider's retry-after, if longer) but never past the request's deadline. A provider's answer counts once its
first chunk has arrived; after that the stream is the client's, and a failure ends it with an in-band error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from router.config import ResilienceSettings
from router.errors import RouterError, Timeout, UpstreamError
from router.frontier.base import Provider
from router.types import ChatRequest, Chunk


@dataclass
class Breaker:
    """Per-provider circuit breaker: open after N consecutive failures, one half-open probe after a cooldown."""

    failures_to_open: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    clock: object = field(default=time.monotonic, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown_s:  # type: ignore[operator]
            return "half-open"
        return "open"

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

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()  # type: ignore[operator]


@dataclass(slots=True)
class Attempted:
    provider: str
    error: str


@dataclass(slots=True)
class Started:
    """A provider's stream whose first chunk has arrived."""

    provider: Provider
    first: Chunk
    rest: AsyncIterator[Chunk]
    attempts: list[Attempted]


class Resilience:
    def __init__(self, settings: ResilienceSettings, providers: Sequence[Provider]) -> None:
        self.settings = settings
        self.breakers = {p.name: Breaker(settings.breaker_failures, settings.breaker_cooldown_s) for p in providers}

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = random.uniform(0, min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**attempt))
        return max(delay, retry_after or 0.0)

    async def first_chunk(self, request: ChatRequest, chain: Sequence[Provider]) -> Started:
        """The first provider in `chain` that starts answering. Raises the last error if none does."""
        loop = asyncio.get_running_loop()
        attempts: list[Attempted] = []
        last: RouterError | None = None
        for provider in chain:
            breaker = self.breakers[provider.name]
            for attempt in range(self.settings.max_retries + 1):
                if not breaker.allow():
                    attempts.append(Attempted(provider.name, "circuit open"))
                    last = last or UpstreamError(f"frontier model {provider.name!r} is unavailable (circuit open)")
                    break
                try:
                    return await self._start(provider, request, attempts)
                except RouterError as exc:
                    attempts.append(Attempted(provider.name, exc.code or exc.type))
                    last = exc
                    if not exc.retryable:
                        if exc.status < 500:
                            breaker.success()  # the provider is fine; the request is at fault
                            raise  # …and another provider would say the same
                        breaker.failure()
                        break
                    breaker.failure()
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
        self.breakers[provider.name].success()
        return Started(provider, first, stream, attempts)
