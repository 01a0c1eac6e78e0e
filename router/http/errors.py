"""Errors as values at the boundary: status, headers and body in the caller's wire format."""

from __future__ import annotations

import math

import orjson
from aiohttp import web

from router.errors import (
    AuthenticationError,
    CircuitOpen,
    EngineError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RouterError,
    Timeout,
    Unavailable,
    UpstreamError,
)

JSON = "application/json"

# The one place a domain error becomes an HTTP status. Looked up along the class's MRO, so a subclass without its
# own row (EngineUnavailable) answers as its parent (Overloaded) and CircuitOpen overrides UpstreamError.
_STATUS: dict[type[RouterError], int] = {
    InvalidRequest: 400,
    AuthenticationError: 401,
    PermissionDenied: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    RateLimited: 429,
    Overloaded: 503,
    Unavailable: 503,
    UpstreamError: 502,
    CircuitOpen: 503,
    EngineError: 500,
    Timeout: 504,
    RouterError: 500,
}


def http_status(exc: RouterError, api: str = "openai") -> int:
    """The status `exc` answers with in `api`'s wire format."""
    if api == "anthropic" and isinstance(exc, Overloaded):
        return 529  # Anthropic signals an overloaded service with its own 529
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_response(exc: RouterError, api: str = "openai") -> web.Response:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    status = http_status(exc, api)
    if api == "anthropic":
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
    }.get(http_status(exc), "api_error")


def api_of(path: str) -> str:
    return "anthropic" if path.startswith("/v1/messages") else "openai"
