"""Metrics (Prometheus) and the one-line-per-request JSON log. Neither ever carries prompt or completion text.

Each application gets its own registry, so several routers (tests) can live in one process.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

access_log = logging.getLogger("router.access")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, tenant_labels: bool = False) -> None:
        self.tenant_labels = tenant_labels  # off: spend is not broken down by tenant name on /metrics
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "router_requests",
            "Requests by endpoint, tier, task and status",
            ["endpoint", "tier", "task", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "router_request_duration_seconds", "Whole request latency", ["tier"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.ttft = Histogram(
            "router_ttft_seconds", "Time to first token", ["tier"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter("router_tokens", "Tokens by tier and direction", ["tier", "direction"], registry=r)
        self.cost = Counter("router_cost_usd", "Frontier and local spend", ["tier", "tenant"], registry=r)
        self.saved = Counter("router_saved_usd", "Saved against all-frontier", ["tenant"], registry=r)
        self.cache = Counter("router_cache_events", "Cache hits, misses, stores, evictions", ["event"], registry=r)
        self.escalations = Counter("router_escalations", "Local answers escalated", ["reason"], registry=r)
        self.in_flight = Gauge("router_in_flight", "Requests in flight", registry=r)
        self.queue_depth = Gauge("router_queue_depth", "Requests waiting for an engine slot", ["model"], registry=r)
        self.slots = Gauge("router_engine_slots_in_use", "Engine slots decoding", ["model"], registry=r)
        self.shed = Counter("router_shed", "Requests refused by limits", ["reason"], registry=r)
        self.loop_lag = Histogram(
            "router_event_loop_lag_seconds",
            "How late the event loop ran a probe timer: time it was busy with something else",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = Gauge("router_event_loop_lag_max_seconds", "Longest probe lag since start", registry=r)
        self.engine_threads = Gauge(
            "router_engine_threads", "llama.cpp threads the engine decodes with", ["model"], registry=r
        )
        self.engine_steps = Gauge("router_engine_steps", "Engine decode steps since start", ["model"], registry=r)
        self.engine_tokens = Gauge("router_engine_tokens_generated", "Tokens decoded so far", ["model"], registry=r)

    def tenant(self, name: str | None) -> str:
        """The tenant label value: the name only when tenant labels are on."""
        return (name or "default") if self.tenant_labels else "all"

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def probe_loop_lag(metrics: Metrics, interval_s: float = 0.1) -> None:
    """Forever: sleep `interval_s` and record how late the loop woke us. A lag is time the loop spent on
    something else (a blocking call, a long callback, a GC pause) while every request on it waited."""
    worst = 0.0
    while True:
        start = time.perf_counter()
        await asyncio.sleep(interval_s)
        lag = max(0.0, time.perf_counter() - start - interval_s)
        metrics.loop_lag.observe(lag)
        if lag > worst:
            worst = lag
            metrics.loop_lag_max.set(lag)


_SECRET = re.compile(r"(?i)(bearer\s+|x-api-key[\"':= ]+|sk-|hr_[0-9a-f]+_)[A-Za-z0-9._~+/=_-]+")


def redact(text: str) -> str:
    """Mask anything that looks like a key or a bearer token."""
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)


def log_request(fields: dict[str, object]) -> None:
    """One JSON line per request. `fields` must not hold prompt or completion text unless log_prompts is set."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(redact(orjson.dumps(fields, default=str).decode()))


# The provider SDKs and their HTTP clients log whole request bodies (prompts) at DEBUG and every request at
# INFO. Below WARNING they are silenced, whatever the router's own log level, unless prompts may be logged.
SDK_LOGGERS = ("anthropic", "openai", "httpx", "httpx2", "httpcore", "httpcore2")


def quiet_sdk_loggers(log_prompts: bool) -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if log_prompts else logging.WARNING)
