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
from router.frontier.tier import FrontierTier
from router.http import sse
from router.http.anthropic import parse_messages_request
from router.http.errors import JSON, api_of, error_response
from router.http.openai import parse_chat_request, parse_json
from router.http.writers import writer_for
from router.pipeline import Pipeline
from router.registry import ModelRegistry
from router.routing.policy import RoutingPolicy
from router.types import ChatRequest, Completion

log = logging.getLogger("router")

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", ModelRegistry)
POLICY = web.AppKey("policy", RoutingPolicy)
FRONTIER = web.AppKey("frontier", FrontierTier)
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
    return await _answer(request, parse_chat_request(parse_json(await request.read()), request.headers))


async def messages(request: web.Request) -> web.StreamResponse:
    return await _answer(request, parse_messages_request(parse_json(await request.read()), request.headers))


async def _answer(request: web.Request, chat: ChatRequest) -> web.StreamResponse:
    """Run one chat request through the pipeline and answer in the caller's wire format."""
    chat.request_id = request[REQUEST_ID]
    chat.deadline = asyncio.get_running_loop().time() + request.app[SETTINGS].server.request_timeout_s
    try:
        async with asyncio.timeout_at(chat.deadline):
            outcome = await request.app[PIPELINE].chat(chat)
    except TimeoutError:
        raise Timeout("the request did not start within its deadline") from None
    writer = writer_for(chat, outcome.model)
    if not chat.stream:
        async with aclosing(outcome.rest):
            try:
                async with asyncio.timeout_at(chat.deadline):
                    result = await Completion.gather(outcome.chunks())
            except TimeoutError:
                raise Timeout("the request did not finish within its deadline") from None
        return web.Response(body=writer.body(result), content_type=JSON, headers=outcome.headers)
    response = web.StreamResponse(headers={**sse.HEADERS, **outcome.headers})
    await response.prepare(request)
    async with aclosing(outcome.rest):
        try:
            async with asyncio.timeout_at(chat.deadline):
                await response.write(writer.start())
                async for chunk in outcome.chunks():
                    await response.write(writer.chunk(chunk))
        except TimeoutError:
            await response.write(writer.error(Timeout("the request exceeded its deadline")))
        except RouterError as exc:  # failed after the first byte: end the stream with an in-band error
            await response.write(writer.error(exc))
    return response


# -- application ---------------------------------------------------------------------------------------------


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[FRONTIER] = FrontierTier(settings.frontier)
    app[POLICY] = RoutingPolicy(settings, frontier_models=app[FRONTIER].names)
    app.on_response_prepare.append(_stamp_request_id)
    app.cleanup_ctx.append(_engines_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/route", route)
    return app


async def _engines_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = ModelRegistry(app[SETTINGS])
    app[REGISTRY] = registry
    frontier = app[FRONTIER]
    app[PIPELINE] = Pipeline(app[SETTINGS], registry, app[POLICY], frontier)
    # Load models in the background so /healthz answers at once and /readyz tells when they are ready.
    loading = asyncio.create_task(registry.start())
    await frontier.start()  # clients only: quick, and a provider that cannot start is reported, not fatal
    try:
        yield
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await asyncio.gather(registry.aclose(), frontier.aclose())
