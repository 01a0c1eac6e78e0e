"""Per-request response-cache controls, the same for every wire format.

- `Cache-Control: no-cache` (or `Pragma: no-cache`): do not answer from the cache; the answer may be stored.
- `Cache-Control: no-store`: do not store this answer; it may come from the cache.
- Body field `cache`: `false` opts out of both; or an object `{"no-cache": true, "no-store": true}` (either key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.errors import InvalidRequest


def cache_controls(body: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[bool, bool]:
    """(may look up, may store) for one request."""
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    lookup = "no-cache" not in directives and headers.get("pragma", "").strip().lower() != "no-cache"
    store = "no-store" not in directives
    field = body.get("cache")
    if field is None or field is True:
        return lookup, store
    if field is False:
        return False, False
    if type(field) is dict and set(field) <= {"no-cache", "no-store"} and all(type(v) is bool for v in field.values()):
        return lookup and not field.get("no-cache", False), store and not field.get("no-store", False)
    raise InvalidRequest(
        'cache must be true, false or an object {"no-cache": boolean, "no-store": boolean}', param="cache"
    )
