"""Requests that break HTTP itself (a malformed chunk size, a bad header) get an error body in the caller's API
format too.

aiohttp answers those from its protocol layer, before any middleware runs, with a `text/plain` body and a logged
traceback. `ApiErrorRunner` swaps in a request handler whose `handle_error` renders our error shape instead and
logs one line without a traceback: a client's malformed bytes are not a server fault.

At that layer the request line may be lost (a chunked body that arrived with its headers is parsed before the
request exists), so the API cannot be told from the path. The body is then the union of both formats,
`{"type": "error", "error": {"type", "message", "param", "code"}}`, which the OpenAI and the Anthropic SDKs both
parse as their own error.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from router.errors import InvalidRequest, PayloadTooLarge, RouterError
from router.http.errors import JSON, anthropic_type, api_of, error_response, http_status

log = logging.getLogger("router.http")


class _ApiErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:
            # A failure inside aiohttp, not the client's: keep aiohttp's logging and say nothing more to the client.
            super().handle_error(request, status, exc, message)
            error: RouterError = RouterError("internal error")
        elif status == 413:
            error = PayloadTooLarge(_first_line(message) or "the request is too large")
        else:
            error = InvalidRequest(f"malformed HTTP request: {_first_line(message) or 'bad request'}", code="bad_http")
            log.info("malformed HTTP request from %s: %s", request.remote, _first_line(message))
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error body")
        response = error_response(error, "openai")
        if request.path == "/" or api_of(request.path) == "anthropic":  # path unknown, or Anthropic's
            body = orjson.loads(response.body)  # type: ignore[arg-type]
            body["type"] = "error"
            body["error"]["type"] = anthropic_type(error)
            response = web.Response(status=http_status(error), body=orjson.dumps(body), content_type=JSON)
        response.force_close()
        return response


class _ApiErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ApiErrorHandler(self, loop=self._loop, **self._kwargs)


class ApiErrorRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ApiErrorServer  # same object and state, only the handler class it builds changes
        return server


def _first_line(message: str | None) -> str:
    return (message or "").strip().splitlines()[0][:200] if message and message.strip() else ""
