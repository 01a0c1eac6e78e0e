"""`GET /debug/memory`: tracemalloc's view of the server's Python heap, for soak tests and leak hunts.

Only while tracemalloc traces (start the server with `PYTHONTRACEMALLOC=1`; it slows every allocation, so it is
never on by default) and behind the same rule as /metrics. The first call takes the baseline snapshot; each call
returns the current total and the allocation sites that grew most since the baseline (`?top=N`, `?reset=1`).
"""

from __future__ import annotations

import asyncio
import tracemalloc

import orjson
from aiohttp import web

from router.errors import InvalidRequest, NotFound
from router.http.errors import JSON

BASELINE = web.AppKey("tracemalloc_baseline", list)  # [snapshot] once taken


def _top(raw: str | None) -> int:
    try:
        top = int(raw or "20")
    except ValueError:
        raise InvalidRequest("top must be an integer", param="top") from None
    if not 1 <= top <= 200:
        raise InvalidRequest("top must lie between 1 and 200", param="top")
    return top


async def memory(request: web.Request) -> web.Response:
    if not tracemalloc.is_tracing():
        raise NotFound("tracemalloc is not tracing: start the server with PYTHONTRACEMALLOC=1", code="unknown_url")
    top = _top(request.query.get("top"))
    held = request.app[BASELINE]
    reset = not held or request.query.get("reset") in ("1", "true")
    # Seconds of work on a big heap: in a thread, so the loop keeps serving (slowly: the GIL is shared).
    stats = await asyncio.to_thread(_compare, held, reset)
    current, peak = tracemalloc.get_traced_memory()
    body = {
        "traced_bytes": current,
        "traced_peak_bytes": peak,
        "growth": [
            {"site": str(s.traceback[0]), "size_diff": s.size_diff, "size": s.size, "count_diff": s.count_diff}
            for s in stats[:top]
        ],
    }
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def _compare(held: list[tracemalloc.Snapshot], reset: bool) -> list[tracemalloc.StatisticDiff]:
    snapshot = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
    if reset:
        held[:] = [snapshot]
    return snapshot.compare_to(held[0], "lineno")


def add_routes(app: web.Application) -> None:
    app[BASELINE] = []
    app.router.add_get("/debug/memory", memory)
