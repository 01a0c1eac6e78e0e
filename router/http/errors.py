"""Errors as values at the boundary: status, headers and body in the caller's wire format."""

from __future__ import annotations

import math

import orjson
from aiohttp import web

from router.errors import Overloaded, RouterError

JSON = "application/json"


def error_response(exc: RouterError, api: str = "openai") -> web.Response:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    status = exc.status
    if api == "anthropic":
        # Anthropic signals an overloaded service with its own 529.
        if isinstance(exc, Overloaded):
            status = 529
        body = {"type": "error", "error": {"type": anthropic_type(exc), "message": exc.message}}
    else:
        body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers=headers)


def anthropic_type(exc: RouterError) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        504: "timeout_error",
    }.get(exc.status, "api_error")


def api_of(path: str) -> str:
    return "anthropic" if path.startswith("/v1/messages") else "openai"
