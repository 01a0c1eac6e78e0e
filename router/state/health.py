"""Every Redis call goes through `StateHealth.call`: bounded by `state.timeout_s`, counted, timed, and failures
turned into `StateUnavailable` so each feature applies its own documented policy (fail open or closed)."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.errors import Overloaded

log = logging.getLogger(__name__)
T = TypeVar("T")


class StateUnavailable(Overloaded):
    """The shared state could not be reached in time (503, retryable)."""

    code = "state_unavailable"


class StateHealth:
    def __init__(self, url: str, timeout_s: float, registry: CollectorRegistry | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.up = True
        self.last_error: str | None = None
        self.errors, self.latency, self.up_gauge = _metrics(registry)
        self.up_gauge.set(1)

    async def call(self, op: str, awaitable: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await awaitable
        except Exception as exc:  # any client error: "not reachable now", never a 500
            self.errors.labels(op).inc()
            self._down(f"{op}: {type(exc).__name__}: {exc}" if str(exc) else f"{op}: {type(exc).__name__}")
            raise StateUnavailable("the shared router state (Redis) is unavailable; retry shortly") from None
        self.latency.labels(op).observe(time.perf_counter() - started)
        if not self.up:
            log.warning("shared state %s is reachable again", _redact(self.url))
            self.up, self.last_error = True, None
            self.up_gauge.set(1)
        return result

    def _down(self, why: str) -> None:
        if self.up:
            log.warning("shared state %s unavailable: %s", _redact(self.url), why)
        self.up, self.last_error = False, why
        self.up_gauge.set(0)

    def status(self) -> dict[str, object]:
        return {"backend": "redis", "url": _redact(self.url), "up": self.up, "error": self.last_error}


_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Histogram, Gauge]] = (
    weakref.WeakKeyDictionary()
)


def _metrics(registry: CollectorRegistry | None) -> tuple[Counter, Histogram, Gauge]:
    """The state metrics, registered once per registry (budgets, limits and the cache each have a StateHealth)."""
    if registry is not None and registry in _REGISTERED:
        return _REGISTERED[registry]
    made = (
        Counter("router_state_errors", "Shared-state calls that failed or timed out", ["op"], registry=registry),
        Histogram(
            "router_state_call_seconds",
            "Latency of shared-state calls",
            ["op"],
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        ),
        Gauge("router_state_up", "1 while the shared state answers", registry=registry),
    )
    if registry is not None:
        _REGISTERED[registry] = made
    return made


def _redact(url: str) -> str:
    """Never show a password from redis://user:password@host."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
