"""The local non-chat services (rerank, transcription) in /v1/models, /readyz and /metrics.

Each service module registers itself with `register(app, kind, key)` from its `add_routes`; one middleware then
- appends the service's model to GET /v1/models, with `"kind": "rerank" | "transcription"`;
- adds it to GET /readyz's `models` (state ready | loading | failed); a service still loading makes the server
  not ready (503, "loading") and a failed one is listed in `failures` (503, "failed"), as the engines are;
- counts each request to the service's endpoint in `router_requests{endpoint, tier, task=kind, status}` and its
  latency in `router_service_duration_seconds{endpoint, tier}` (a histogram of its own: rerank and transcription
  latencies would distort the chat latency percentiles of `router_request_duration_seconds`).
It works on the responses of app.py's handlers so that app.py needs no change; merged into those handlers, it
would be a few lines each.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from router.errors import RouterError
from router.http.errors import JSON

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    key: web.AppKey[Any]  # where the service object lives once started (name, ready, failure)
    endpoint: str


REGISTRY: web.AppKey[list[_Entry]] = web.AppKey("local_services", list)
DURATION: web.AppKey[Any] = web.AppKey("local_services_duration", object)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def register(app: web.Application, kind: str, key: web.AppKey[Any], endpoint: str) -> None:
    if REGISTRY not in app:
        app[REGISTRY] = []
        app.middlewares.append(local_services_middleware)
        app[DURATION] = _duration_histogram(app)
    app[REGISTRY].append(_Entry(kind, key, endpoint))


def _state(service: Any) -> str:
    if service.failure is not None:
        return "failed"
    return "ready" if service.ready else "loading"


def _running(app: web.Application) -> list[tuple[_Entry, Any]]:
    return [(e, app[e.key]) for e in app[REGISTRY] if e.key in app]


def _models(app: web.Application, response: web.Response) -> web.Response:
    body = orjson.loads(response.body)  # type: ignore[arg-type]
    created = int(time.time())
    for entry, service in _running(app):
        for name in getattr(service, "names", (service.name,)):
            body["data"].append(
                {"id": name, "object": "model", "created": created, "owned_by": "hybrid-router", "kind": entry.kind}
            )
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def _readyz(app: web.Application, response: web.Response) -> web.Response:
    services = _running(app)
    if not services:
        return response
    body = orjson.loads(response.body)  # type: ignore[arg-type]
    failures = body.get("failures", {})
    status = response.status
    for entry, service in services:
        state = _state(service)
        body.setdefault("models", {})[service.name] = {"kind": entry.kind, "state": state}
        if state == "failed":
            failures[service.name] = service.failure
        if state != "ready":
            status = 503
    if status == 503:
        body["failures"] = failures
        if body["status"] in ("ready", "loading"):
            body["status"] = "failed" if failures else "loading"
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)


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
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if METRICS in app and app[DURATION] is not None:
            app[METRICS].requests.labels(entry.endpoint, tier, entry.kind, str(status)).inc()
            app[DURATION].labels(entry.endpoint, tier).observe(time.perf_counter() - started)


@web.middleware
async def local_services_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    app = request.app
    for entry in app[REGISTRY]:
        if path == entry.endpoint and request.method == "POST":
            return await _counted(request, handler, entry)
    response = await handler(request)
    if request.method == "GET" and isinstance(response, web.Response) and response.body is not None:
        if path == "/v1/models" and response.status == 200:
            return _models(app, response)
        if path == "/readyz":
            return _readyz(app, response)
    return response
