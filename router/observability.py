"""Metrics (Prometheus) and the one-line-per-request JSON log. Neither ever carries prompt or completion text.

Each application gets its own registry, so several routers (tests) can live in one process.
"""

from __future__ import annotations

import logging
import re

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

access_log = logging.getLogger("router.access")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
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

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
