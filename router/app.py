"""The aiohttp application: routes, middlewares, and the lifecycle of engines."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import orjson
from aiohttp import web

from router.config import Settings
from router.errors import InvalidRequest, MethodNotAllowed, NotFound, PayloadTooLarge, RouterError, Timeout
from router.http import sse
from router.http.errors import JSON, api_of, error_response
from router.http.openai import ChunkEncoder, completion_body, parse_chat_request, parse_json
from router.pipeline import Outcome, Pipeline
from router.registry import ModelRegistry
from router.routing.policy import RoutingPolicy
from router.types import Completion

log = logging.getLogger("router")

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", ModelRegistry)
POLICY = web.AppKey("policy", RoutingPolicy)
PIPELINE = web.AppKey("pipeline", Pipeline)

REQUEST_ID = web.RequestKey("request_id", str)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- middlewares ---------------------------------------------------------------------------------------------


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an error body in the caller's format; no traceback ever reaches a client."""
    given = request.headers.get("x-request-id", "")
    request[REQUEST_ID] = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
    api = api_of(request.path)
    try:
        return await handler(request)
    except RouterError as exc:
        return error_response(exc, api)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(request, exc), api)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request[REQUEST_ID])
        exc = RouterError(f"internal error; request id {request[REQUEST_ID]}")
        return error_response(exc, api)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> RouterError:
    if exc.status == 404:
        return NotFound(f"no such endpoint: {request.method} {request.path}", code="unknown_url")
    if exc.status == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if exc.status == 413:
        limit = request.app[SETTINGS].server.max_body_bytes
        return PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
    return InvalidRequest(exc.reason or "bad request")


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare runs for every response, streaming ones and errors included.
    response.headers["x-request-id"] = request.get(REQUEST_ID) or uuid.uuid4().hex


# -- handlers ------------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if registry.ready:
        return web.Response(body=b'{"status":"ready"}', content_type=JSON)
    body = {"status": "failed" if registry.failures else "loading", "failures": registry.failures}
    return web.Response(status=503, body=orjson.dumps(body), content_type=JSON)


async def list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "hybrid-router"}
        for name in request.app[POLICY].model_names
    ]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)


async def route(request: web.Request) -> web.Response:
    """Dry run: the decision for a chat request, without running any model."""
    body = parse_json(await request.read())
    body.setdefault("model", "auto")
    chat = parse_chat_request(body, request.headers)
    policy = request.app[POLICY]
    decision = policy.decide(chat)
    text = "\n".join(m.content for m in chat.messages)
    payload = {**decision.as_dict(), "features": policy.scorer.explain(text)}
    return web.Response(body=orjson.dumps(payload), content_type=JSON, headers=decision.headers())


async def chat_completions(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    chat = parse_chat_request(parse_json(await request.read()), request.headers)
    chat.request_id = request[REQUEST_ID]
    loop = asyncio.get_running_loop()
    chat.deadline = loop.time() + settings.server.request_timeout_s
    try:
        async with asyncio.timeout_at(chat.deadline):
            outcome = await request.app[PIPELINE].chat(chat)
    except TimeoutError:
        raise Timeout("the request did not start within its deadline") from None
    completion_id = "chatcmpl-" + chat.request_id
    if not chat.stream:
        async with aclosing(outcome.rest):
            try:
                async with asyncio.timeout_at(chat.deadline):
                    result = await Completion.gather(outcome.chunks())
            except TimeoutError:
                raise Timeout("the request did not finish within its deadline") from None
        return web.Response(
            body=completion_body(completion_id, outcome.model, result), content_type=JSON, headers=outcome.headers
        )
    return await _stream_openai(
        request, outcome, ChunkEncoder(completion_id, outcome.model, chat.include_usage), chat.deadline
    )


async def _stream_openai(
    request: web.Request, outcome: Outcome, encoder: ChunkEncoder, deadline: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers={**sse.HEADERS, **outcome.headers})
    await response.prepare(request)
    async with aclosing(outcome.rest):
        try:
            async with asyncio.timeout_at(deadline):
                await response.write(encoder.first())
                async for chunk in outcome.chunks():
                    if chunk.text:
                        await response.write(encoder.delta(chunk.text))
                    if chunk.finish_reason is not None:
                        await response.write(encoder.finish(chunk.finish_reason, chunk.usage))
        except TimeoutError:
            await response.write(encoder.error("the request exceeded its deadline", "timeout_error", "timeout"))
        except RouterError as exc:  # failed after the first byte: end the stream with an in-band error
            await response.write(encoder.error(exc.message, exc.type, exc.code))
    return response


# -- application ---------------------------------------------------------------------------------------------


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[POLICY] = RoutingPolicy(settings)
    app.on_response_prepare.append(_stamp_request_id)
    app.cleanup_ctx.append(_engines_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/route", route)
    return app


async def _engines_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = ModelRegistry(app[SETTINGS])
    app[REGISTRY] = registry
    app[PIPELINE] = Pipeline(registry, app[POLICY])
    # Load models in the background so /healthz answers at once and /readyz tells when they are ready.
    loading = asyncio.create_task(registry.start())
    try:
        yield
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await registry.aclose()
