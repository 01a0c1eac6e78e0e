"""The local non-chat services (rerank, transcription) in /v1/models, /readyz and /metrics.

Each service module registers its endpoint with `register(app, kind, key, endpoint, handler)` from its
`add_routes`, which routes the handler wrapped in a counter: each request goes in
`router_requests{endpoint, tier, task=kind, status}` and its latency in `router_service_duration_seconds{endpoint,
tier}` (a histogram of its own: rerank and transcription latencies would distort the chat latency percentiles of
`router_request_duration_seconds`). app.py's /v1/models lists `model_entries` (with `"kind"`), and /readyz adds
`readiness` (state ready | loading | failed; a service still loading or failed makes the server not ready, as the
engines do).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from router.errors import RouterError
from router.http.errors import http_status

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    key: web.AppKey[Any]  # where the service object lives once started (name, ready, failure)
    endpoint: str


REGISTRY: web.AppKey[list[_Entry]] = web.AppKey("local_services", list)
DURATION: web.AppKey[Any] = web.AppKey("local_services_duration", object)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def register(app: web.Application, kind: str, key: web.AppKey[Any], endpoint: str, handler: Handler) -> None:
    """Route POST `endpoint` to `handler`, counted, and list the service `app[key]` in /v1/models and /readyz."""
    if REGISTRY not in app:
        app[REGISTRY] = []
        app[DURATION] = _duration_histogram(app)
    entry = _Entry(kind, key, endpoint)
    app[REGISTRY].append(entry)

    async def counted(request: web.Request) -> web.StreamResponse:
        return await _counted(request, handler, entry)

    app.router.add_post(endpoint, counted)


def _state(service: Any) -> str:
    if service.failure is not None:
        return "failed"
    return "ready" if service.ready else "loading"


def _running(app: web.Application) -> list[tuple[_Entry, Any]]:
    return [(e, app[e.key]) for e in app.get(REGISTRY, ()) if e.key in app]


def model_entries(app: web.Application, created: int) -> list[dict[str, Any]]:
    """/v1/models rows for the started services, aliases included."""
    return [
        {"id": name, "object": "model", "created": created, "owned_by": "hybrid-router", "kind": entry.kind}
        for entry, service in _running(app)
        for name in getattr(service, "names", (service.name,))
    ]


def readiness(app: web.Application) -> tuple[dict[str, dict[str, str]], dict[str, str], bool]:
    """(models, failures, ready) of the started services, for /readyz."""
    models: dict[str, dict[str, str]] = {}
    failures: dict[str, str] = {}
    ready = True
    for entry, service in _running(app):
        state = _state(service)
        models[service.name] = {"kind": entry.kind, "state": state}
        if state == "failed":
            failures[service.name] = service.failure
        ready = ready and state == "ready"
    return models, failures, ready


def _duration_histogram(app: web.Application) -> Any:
    from prometheus_client import Histogram

    from router.app import METRICS  # imported here: app.py imports the modules that import this one

    if METRICS not in app:
        return None
    return Histogram(
        "router_service_duration_seconds",
        "Latency of the local rerank and transcription endpoints",
        ["endpoint", "tier"],
        buckets=LATENCY_BUCKETS,
        registry=app[METRICS].registry,
    )


async def _counted(request: web.Request, handler: Handler, entry: _Entry) -> web.StreamResponse:
    from router.app import METRICS

    app = request.app
    started = time.perf_counter()
    tier, status = "local", 500
    try:
        response = await handler(request)
        tier, status = response.headers.get("x-router-tier", "local"), response.status
        return response
    except RouterError as exc:
        status = http_status(exc)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if METRICS in app and app[DURATION] is not None:
            app[METRICS].requests.labels(entry.endpoint, tier, entry.kind, str(status)).inc()
            app[DURATION].labels(entry.endpoint, tier).observe(time.perf_counter() - started)
