"""The router's exception tree, in one place.

Inside the router, failures are exceptions of these classes. They say what went wrong (the class), whose fault it
is (`client_fault`), whether trying again may help (`retryable`, `retry_after`) and a stable `code`; they know
nothing of HTTP. At the HTTP boundary each becomes a value: a status code and an error body in the caller's wire
format, mapped in one table in `router/http/errors.py` (the statuses in this tree are that table's).

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
    ├── UpstreamError        502  a frontier or external engine failed
    │   └── CircuitOpen      503  a frontier model's breaker is open (retry_after: until its probe)
    ├── EngineError          500  a local engine failed (never caused by input)
    └── Timeout              504  the request's deadline passed
"""

from __future__ import annotations


class RouterError(Exception):
    type: str = "server_error"  # the error's category, in the vocabulary both wire formats share
    code: str | None = None
    retryable: bool = False  # a retry (or another provider) may succeed: overload, rate limit, 5xx, timeout
    client_fault: bool = False  # the request itself is wrong: sending it again, anywhere, fails the same way

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
    type = "invalid_request_error"
    client_fault = True


class AuthenticationError(RouterError):
    type = "authentication_error"
    code = "invalid_api_key"
    client_fault = True


class PermissionDenied(RouterError):
    type = "permission_error"
    client_fault = True


class NotFound(RouterError):
    type = "not_found_error"
    client_fault = True


class MethodNotAllowed(RouterError):
    type = "invalid_request_error"
    code = "method_not_allowed"
    client_fault = True


class PayloadTooLarge(RouterError):
    type = "invalid_request_error"
    code = "request_too_large"
    client_fault = True


class RateLimited(RouterError):
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True


class Overloaded(RouterError):
    type = "overloaded_error"
    code = "overloaded"
    retryable = True


class EngineUnavailable(Overloaded):
    code = "local_tier_down"


class Unavailable(RouterError):
    type = "api_error"
    code = "tier_unavailable"


class UpstreamError(RouterError):
    type = "api_error"
    code = "upstream_error"
    retryable = True


class CircuitOpen(UpstreamError):
    code = "circuit_open"


class EngineError(RouterError):
    type = "server_error"
    code = "engine_error"


class Timeout(RouterError):
    type = "timeout_error"
    code = "timeout"
    retryable = True
