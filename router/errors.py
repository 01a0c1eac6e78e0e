"""The router's exception tree, in one place.

Inside the router, failures are exceptions of these classes. At the HTTP boundary each becomes a value: a status
code and an error body in the caller's wire format (see `router/http/errors.py`).

    RouterError
    ├── InvalidRequest       400  the request is malformed or asks for something impossible
    ├── AuthenticationError  401
    ├── PermissionDenied     403
    ├── NotFound             404  unknown model or path
    ├── MethodNotAllowed     405
    ├── PayloadTooLarge      413
    ├── RateLimited          429  (retry_after)
    ├── Overloaded           503 / Anthropic 529  (retry_after)
    │   └── EngineUnavailable     a local engine is down (crashed, restarting); retry_after: the next attempt
    ├── Unavailable          503  the decided tier is not configured (e.g. no frontier model)
    ├── UpstreamError        502  a frontier or external engine failed (status, type kept)
    │   └── CircuitOpen      503  a frontier model's breaker is open (retry_after: until its probe)
    ├── EngineError          500  a local engine failed (never caused by input)
    └── Timeout              504  the request's deadline passed
"""

from __future__ import annotations


class RouterError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False  # a retry (or another provider) may succeed: overload, rate limit, 5xx, timeout

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.headers = headers or {}  # extra response headers, e.g. x-ratelimit-*


class InvalidRequest(RouterError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(RouterError):
    status = 403
    type = "permission_error"


class NotFound(RouterError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(RouterError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(RouterError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(RouterError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True


class Overloaded(RouterError):
    status = 503
    type = "overloaded_error"
    code = "overloaded"
    retryable = True


class EngineUnavailable(Overloaded):
    code = "local_tier_down"


class Unavailable(RouterError):
    status = 503
    type = "api_error"
    code = "tier_unavailable"


class UpstreamError(RouterError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    retryable = True


class CircuitOpen(UpstreamError):
    status = 503
    code = "circuit_open"


class EngineError(RouterError):
    status = 500
    type = "server_error"
    code = "engine_error"


class Timeout(RouterError):
    status = 504
    type = "timeout_error"
    code = "timeout"
    retryable = True
