"""`GET /dashboard`: a page a person can open; `GET /dashboard/data`: what it shows, as JSON.

The page is one static HTML file with a little plain JavaScript (no build step) that polls the data endpoint.
The data is per tenant and carries spend, so it sits behind the same rule as /metrics (an admin key or the scrape
token, unless metrics are public or auth is off); the page itself holds nothing and asks for a key when refused.
Figures come from the ledger over a window (`?minutes=`, default 60) and live gauges from the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from importlib.resources import files
from typing import Any

import orjson
from aiohttp import web

from router.errors import InvalidRequest, NotFound
from router.http.errors import JSON

PAGE = files("router.http").joinpath("dashboard.html")
MAX_MINUTES = 7 * 24 * 60


async def page(request: web.Request) -> web.Response:
    return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")


def _minutes(raw: str | None) -> float:
    try:
        minutes = float(raw or "60")
    except ValueError:
        raise InvalidRequest("minutes must be a number", param="minutes") from None
    if not 0 < minutes <= MAX_MINUTES:
        raise InvalidRequest(f"minutes must lie between 0 and {MAX_MINUTES}", param="minutes")
    return minutes


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


def summarise(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Ledger rows → totals and per-tenant figures (tier mix, spend, savings, cache, latency, escalations)."""
    groups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        groups[row[0]].append(row)
    return {"all": _figures(rows), "tenants": {name: _figures(group) for name, group in sorted(groups.items())}}


def _figures(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    tiers: dict[str, int] = defaultdict(int)
    escalations: dict[str, int] = defaultdict(int)
    hits = lookups = errors = 0
    latency: dict[str, list[float]] = defaultdict(list)
    frontier = local = saved = counterfactual = 0.0
    for _tenant, tier, status, cache, escalated, latency_ms, _ttft, cost, local_cost, save, cf in rows:
        tiers[tier] += 1
        errors += status != "ok"
        if escalated:
            escalations[escalated] += 1
        if cache and cache != "bypass":
            lookups += 1
            hits += cache.startswith("hit")
        if status == "ok":
            latency[tier].append(latency_ms)
        frontier, local, saved, counterfactual = frontier + cost, local + local_cost, saved + save, counterfactual + cf
    return {
        "requests": len(rows),
        "errors": errors,
        "tiers": dict(tiers),
        "cost_usd": {"frontier": round(frontier, 6), "local": round(local, 6)},
        "saved_usd": round(saved, 6),
        "all_frontier_usd": round(counterfactual, 6),
        "cache": {"lookups": lookups, "hits": hits, "hit_rate": round(hits / lookups, 4) if lookups else None},
        "latency_ms": {tier: _percentiles(values) for tier, values in sorted(latency.items())},
        "escalations": dict(escalations),
    }


async def data(request: web.Request) -> web.Response:
    from router.app import ACCOUNTING, IN_FLIGHT, METRICS

    app = request.app
    minutes = _minutes(request.query.get("minutes"))
    ledger = app[ACCOUNTING].ledger
    if ledger is None:
        raise NotFound("the dashboard reads the cost ledger, which is off (accounting.ledger_path: '')")
    await asyncio.to_thread(ledger.flush)
    rows = await asyncio.to_thread(ledger.recent, time.time() - minutes * 60)
    metrics = app[METRICS]
    body = {
        "object": "dashboard",
        "window_minutes": minutes,
        "counterfactual": app[ACCOUNTING].pricing.counterfactual,
        "generated_at": time.time(),
        "live": {
            "in_flight": len(app[IN_FLIGHT]),
            "queue_depth": {s.labels["model"]: s.value for s in _samples(metrics.queue_depth)},
            "event_loop_lag_max_s": next((s.value for s in _samples(metrics.loop_lag_max)), None),
        },
        **summarise(rows),
    }
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def _samples(metric: Any) -> list[Any]:
    return [s for family in metric.collect() for s in family.samples]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/data", data)
