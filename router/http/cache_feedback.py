"""`POST /v1/cache/feedback`: a client says whether a cached answer was right, so the thresholds learn.

    {"request_id": "<x-request-id of the answer, or its response id chatcmpl-…/msg_…>", "correct": false}
    {"entry_id": "<x-router-cache-entry of the answer>", "correct": false}

Exactly one of `request_id` (a recent hit: its outcome becomes an observation at its similarity, and a wrong one
raises that entry's floor) and `entry_id` (only `"correct": false`: the entry's answer is bad and is dropped).
Scoped to the caller's tenant: another tenant's request or entry is a 404, as if it never existed. Errors come in
the OpenAI format, like every /v1/ route but /v1/messages.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router.errors import InvalidRequest, NotFound
from router.http.errors import JSON
from router.http.openai import parse_json

_FIELDS = frozenset({"request_id", "entry_id", "correct"})
_PREFIXES = ("chatcmpl-", "msg_")


def parse_feedback(body: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    """(request id, entry id, correct) from a feedback body, or InvalidRequest naming the field at fault."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        expected = "expected request_id or entry_id, and correct"
        raise InvalidRequest(f"unknown field {unknown[0]!r}; {expected}", param=unknown[0])
    correct = body.get("correct")
    if type(correct) is not bool:
        raise InvalidRequest("correct must be a boolean (true: the cached answer was right)", param="correct")
    ids = {name: body[name] for name in ("request_id", "entry_id") if body.get(name) is not None}
    if len(ids) != 1:
        raise InvalidRequest("give exactly one of request_id and entry_id", param="request_id")
    ((name, value),) = ids.items()
    if type(value) is not str or not 1 <= len(value) <= 200:
        raise InvalidRequest(f"{name} must be a non-empty string of at most 200 characters", param=name)
    if name == "entry_id":
        if correct:
            raise InvalidRequest(
                "by entry_id only a wrong answer can be reported (correct: false); report a hit by request_id",
                param="correct",
            )
        return None, value, correct
    for prefix in _PREFIXES:
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    return value, None, correct


async def cache_feedback(request: web.Request) -> web.Response:
    from router.app import CACHE, TENANT  # the app module imports this one

    cache = request.app.get(CACHE)
    if cache is None or not cache.settings.enabled:
        raise NotFound("the response cache is disabled on this server (cache.enabled: false)", code="unknown_url")
    request_id, entry_id, correct = parse_feedback(parse_json(await request.read()))
    result = cache.feedback(request[TENANT].name, request_id=request_id, entry_id=entry_id, correct=correct)
    return web.Response(body=orjson.dumps({"object": "cache.feedback", **result}), content_type=JSON)
