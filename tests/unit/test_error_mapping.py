"""Domain errors know nothing of HTTP; router/http/errors.py maps each class to its status in each API."""

from __future__ import annotations

import orjson
import pytest

import router.errors as errors
from router.errors import RouterError
from router.frontier.resilience import classify
from router.http.errors import error_response, http_status

EXPECTED = {
    errors.InvalidRequest: (400, 400),
    errors.AuthenticationError: (401, 401),
    errors.PermissionDenied: (403, 403),
    errors.NotFound: (404, 404),
    errors.MethodNotAllowed: (405, 405),
    errors.PayloadTooLarge: (413, 413),
    errors.RateLimited: (429, 429),
    errors.Overloaded: (503, 529),
    errors.EngineUnavailable: (503, 529),
    errors.Unavailable: (503, 503),
    errors.UpstreamError: (502, 502),
    errors.CircuitOpen: (503, 503),
    errors.EngineError: (500, 500),
    errors.Timeout: (504, 504),
    errors.RouterError: (500, 500),
}


def _all_error_classes() -> set[type[RouterError]]:
    return {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, RouterError)}


def test_every_error_class_has_an_expected_status() -> None:
    assert _all_error_classes() == set(EXPECTED), "a new error class needs a row here and in router/http/errors.py"


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=lambda c: c.__name__))
def test_status_per_api(cls: type[RouterError]) -> None:
    exc = cls("boom")
    assert not hasattr(exc, "status")  # the domain value carries no HTTP status
    openai_status, anthropic_status = EXPECTED[cls]
    assert http_status(exc, "openai") == openai_status
    assert http_status(exc, "anthropic") == anthropic_status
    response = error_response(exc, "anthropic")
    assert response.status == anthropic_status
    assert orjson.loads(response.body)["type"] == "error"  # type: ignore[arg-type]


def test_a_subclass_without_its_own_row_answers_as_its_parent() -> None:
    class Shed(errors.Overloaded):
        code = "shed"

    assert http_status(Shed("x")) == 503 and http_status(Shed("x"), "anthropic") == 529


def test_client_faults_are_never_counted_against_a_provider() -> None:
    for cls in EXPECTED:
        exc = cls("x")
        kind = classify(exc)
        if exc.client_fault:
            assert kind == "request", cls
            assert http_status(exc) < 500
        elif not exc.retryable and cls not in (errors.RateLimited, errors.Overloaded, errors.EngineUnavailable):
            assert kind == "refused", cls
