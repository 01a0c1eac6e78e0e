"""The aiohttp application: routes, middlewares, and the lifecycle of engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    ContentEncodingError,
    ContentLengthError,
    DecompressSizeError,
    HttpProcessingError,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestPayloadError

from router.accounting.access import AccessControl, Tenant, Ticket
from router.accounting.service import Accounting, Finished
from router.cache import EmbeddingService, ResponseCache
from router.config import Settings
from router.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RouterError,
    Timeout,
)
from router.frontier.tier import FrontierTier
from router.http import dashboard, debug, local_services, rerank, sse, transcription
from router.http.anthropic import parse_messages_request
from router.http.cache_feedback import cache_feedback
from router.http.count_tokens import count_tokens, stream_input_tokens
from router.http.embeddings import embeddings_body, parse_embedding_request
from router.http.errors import JSON, api_of, error_response
from router.http.headers import outcome_headers
from router.http.openai import parse_chat_request, parse_json
from router.http.writers import Writer, writer_for
from router.observability import Metrics, access_log, log_request, probe_loop_lag, quiet_sdk_loggers
from router.outcome import Outcome
from router.pipeline import Pipeline
from router.registry import ModelRegistry
from router.routing.policy import RoutingPolicy
from router.state.connect import cache_replicator
from router.types import ChatRequest, Chunk, Completion

log = logging.getLogger("router")

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", ModelRegistry)
POLICY = web.AppKey("policy", RoutingPolicy)
FRONTIER = web.AppKey("frontier", FrontierTier)
PIPELINE = web.AppKey("pipeline", Pipeline)
EMBEDDINGS = web.AppKey("embeddings", EmbeddingService)
CACHE = web.AppKey("cache", ResponseCache)

ACCESS = web.AppKey("access", AccessControl)
ACCOUNTING = web.AppKey("accounting", Accounting)
METRICS = web.AppKey("metrics", Metrics)
IN_FLIGHT = web.AppKey("in_flight", set)  # the tasks answering chat requests, for a drain that can end them cleanly

REQUEST_ID = web.RequestKey("request_id", str)
TENANT = web.RequestKey("tenant", Tenant)
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
    except (HttpProcessingError, RequestPayloadError) as exc:
        # The body could not be read: bad content-encoding, broken chunking, a truncated or oversized payload.
        # aiohttp raises the parser's error wrapped in RequestPayloadError when the handler reads the body.
        cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__ or exc.__context__
        response = error_response(_from_processing_error(request, cause), api)
        # The rest of the body is unreadable: close after answering, and mark it ended so that aiohttp's lingering
        # drain does not read it again and log the same error as an unhandled exception.
        response.force_close()
        request.content.feed_eof()
        return response
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


def _from_processing_error(request: web.Request, exc: BaseException | None) -> RouterError:
    if not isinstance(exc, HttpProcessingError):
        return InvalidRequest("the request body could not be read", code="invalid_body")
    if exc.code == 413 or isinstance(exc, DecompressSizeError):
        limit = request.app[SETTINGS].server.max_body_bytes
        return PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
    what = {
        ContentEncodingError: f"the body is not valid {request.headers.get('Content-Encoding', 'encoded')} data",
        TransferEncodingError: "the chunked body is malformed",
        ContentLengthError: "the body is shorter than its Content-Length",
    }
    reason = next((text for cls, text in what.items() if isinstance(exc, cls)), "the request body could not be read")
    return InvalidRequest(reason, code="invalid_body")


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare runs for every response, streaming ones and errors included.
    response.headers["x-request-id"] = request.get(REQUEST_ID) or uuid.uuid4().hex


# -- handlers ------------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def readyz(request: web.Request) -> web.Response:
    """Ready when every engine is serving *now* (a crashed worker that is restarting is not), and the cache is."""
    registry = request.app[REGISTRY]
    failures = dict(registry.failures)
    services, service_failures, services_ready = local_services.readiness(request.app)
    models = {**registry.status(), **services}
    failures.update(service_failures)
    ready = registry.ready and request.app[CACHE].ready and services_ready
    embeddings = request.app.get(EMBEDDINGS)
    if embeddings is not None:
        ready = ready and embeddings.ready
        if embeddings.failure is not None:
            failures[embeddings.name] = embeddings.failure
    if ready:
        state = request.app[ACCOUNTING].store.status()  # shared state: reported, not gated (see docs/scale-out.md)
        return web.Response(body=orjson.dumps({"status": "ready", "models": models, "state": state}), content_type=JSON)
    if failures:
        status = "failed"
    elif any(m.get("state") == "down" for m in models.values()):
        status = "degraded"  # a local engine is restarting: frontier and cached traffic still flow
    else:
        status = "loading"
    body = {"status": status, "failures": failures, "models": models}
    return web.Response(status=503, body=orjson.dumps(body), content_type=JSON)


async def list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "hybrid-router"}
        for name in request.app[POLICY].model_names
    ]
    if EMBEDDINGS in request.app:
        name = request.app[EMBEDDINGS].name
        data.append({"id": name, "object": "model", "created": created, "owned_by": "hybrid-router"})
    data += local_services.model_entries(request.app, created)
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=JSON)


async def route(request: web.Request) -> web.Response:
    """Dry run: the decision for a chat request, without running any model."""
    body = parse_json(await request.read())
    body.setdefault("model", "auto")
    chat = parse_chat_request(body, request.headers)
    policy = request.app[POLICY]
    decision = policy.decide(chat)
    payload = {**decision.as_dict(), "features": policy.explain(chat)}
    return web.Response(body=orjson.dumps(payload), content_type=JSON, headers=decision.headers())


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _answer(request, parse_chat_request(parse_json(await request.read()), request.headers))


async def messages(request: web.Request) -> web.StreamResponse:
    return await _answer(request, parse_messages_request(parse_json(await request.read()), request.headers))


async def embeddings(request: web.Request) -> web.Response:
    service = request.app.get(EMBEDDINGS)
    if service is None:
        raise NotFound("embeddings are disabled on this server (embeddings.enabled: false)", code="unknown_url")
    settings = request.app[SETTINGS].embeddings
    body = parse_json(await request.read())
    service.require()
    parsed = parse_embedding_request(body, service.name, service.dim, settings.max_inputs)
    result = await service.embed(parsed.inputs)
    truncated = sum(result.truncated)
    headers = {"x-router-truncated-inputs": str(truncated)} if truncated else None
    return web.Response(body=embeddings_body(parsed, result), content_type=JSON, headers=headers)


async def _answer(request: web.Request, chat: ChatRequest) -> web.StreamResponse:
    """Run one chat request through the pipeline and answer in the caller's wire format.

    Around it: the tenant's limits (admission), and when it ends however it ends, the accounting: budget
    settlement, ledger row, metrics and one log line."""
    app = request.app
    access = app[ACCESS]
    ticket = await _admit(request, chat)
    app[METRICS].in_flight.inc()
    task = asyncio.current_task()
    app[IN_FLIGHT].add(task)
    done = Finished(chat, request.path, "error", time.monotonic())
    try:
        try:
            async with asyncio.timeout_at(chat.deadline):
                outcome = await app[PIPELINE].chat(chat)
        except TimeoutError:
            raise Timeout("the request did not start within its deadline") from None
        done.outcome = outcome
        headers = outcome_headers(outcome)  # the one place the outcome becomes x-router-* headers
        headers.update(ticket.headers)
        writer = writer_for(chat, outcome.model, await stream_input_tokens(app, chat, outcome))
        if chat.stream:
            return await _stream(request, outcome, writer, headers, done)
        return await _whole(outcome, writer, headers, done)
    except (asyncio.CancelledError, ConnectionResetError):
        done.status = "cancelled"
        raise
    finally:
        app[IN_FLIGHT].discard(task)
        access.release(ticket)
        app[METRICS].in_flight.dec()
        summary = app[ACCOUNTING].finish(done)
        if access_log.isEnabledFor(logging.INFO):  # no log line built when nobody reads it
            log_request(_log_fields(done, summary, app[SETTINGS].server.log_prompts))


async def _admit(request: web.Request, chat: ChatRequest) -> Ticket:
    """Who is asking, with what deadline, within the tenant's limits: the admission ticket, or a refusal."""
    app = request.app
    access, tenant = app[ACCESS], request[TENANT]
    chat.request_id = request[REQUEST_ID]
    chat.tenant = tenant.name
    chat.allowed_tiers = tuple(tenant.settings.allowed_tiers)
    chat.budget_exhausted = tenant.settings.on_budget_exhausted
    chat.workflow = chat.metadata.get("workflow") or request.headers.get("x-router-workflow") or None
    access.check_model(tenant, chat.model)
    chat.deadline = asyncio.get_running_loop().time() + _timeout(request, app[SETTINGS])
    try:
        # Estimating tokens scans the whole prompt: only worth it when a tokens/min limit will read it.
        return await access.admit(tenant, _admission_tokens(chat) if tenant.tokens is not None else 0)
    except RouterError as exc:
        app[METRICS].shed.labels(exc.code or exc.type).inc()
        raise


async def _whole(outcome: Outcome, writer: Writer, headers: dict[str, str], done: Finished) -> web.Response:
    """A non-streaming answer: gather the stream, send one body."""
    async with aclosing(outcome.rest):
        try:
            async with asyncio.timeout_at(done.request.deadline):
                result = await Completion.gather(_observed(outcome.chunks(), done))
        except TimeoutError:
            raise Timeout("the request did not finish within its deadline") from None
    return web.Response(body=writer.body(result), content_type=JSON, headers=headers)


async def _stream(
    request: web.Request, outcome: Outcome, writer: Writer, headers: dict[str, str], done: Finished
) -> web.StreamResponse:
    """An SSE answer; a failure after the first byte ends it with an in-band error in the caller's format."""
    response = sse.CoalescingResponse(headers={**sse.HEADERS, **headers})
    await response.prepare(request)
    try:
        async with aclosing(outcome.rest):
            try:
                async with asyncio.timeout_at(done.request.deadline):
                    # The stream's opening bytes leave with the first chunk: one send, not two.
                    done.note(outcome.first)
                    await response.write(writer.start() + writer.chunk(outcome.first))
                    async for chunk in outcome.rest:
                        done.note(chunk)
                        data = writer.chunk(chunk)
                        if data:
                            await response.write(data)
            except TimeoutError:
                done.status = "error"
                await response.write(writer.error(Timeout("the request exceeded its deadline")))
            except RouterError as exc:
                done.status = "error"
                await response.write(writer.error(exc))
        await response.write_eof()  # the last queued bytes leave here: a client that left is seen here too
        return response
    except asyncio.CancelledError:
        # Cancelled while streaming: the client left (the write fails, harmlessly) or the drain timeout ran out on
        # shutdown (router/server.py; the client gets a proper in-band error, not a cut stream).
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await response.write(writer.error(Overloaded("the server is shutting down")))
                await response.write_eof()
        raise


async def _observed(chunks: AsyncIterator[Chunk], done: Finished) -> AsyncIterator[Chunk]:
    async for chunk in chunks:
        done.note(chunk)
        yield chunk


def _timeout(request: web.Request, settings: Settings) -> float:
    """The server's deadline, or a shorter one the client asks for with `x-router-timeout` (seconds)."""
    limit = settings.server.request_timeout_s
    raw = request.headers.get("x-router-timeout")
    if raw is None:
        return limit
    try:
        asked = float(raw)
    except ValueError:
        raise InvalidRequest("x-router-timeout must be a number of seconds", param="x-router-timeout") from None
    if not 0 < asked < 1e9:
        raise InvalidRequest("x-router-timeout must be positive", param="x-router-timeout")
    return min(asked, limit)


def _admission_tokens(chat: ChatRequest) -> int:
    return chat.prompt_tokens + (chat.sampling.max_tokens or 256)


def _log_fields(done: Finished, summary: dict[str, object], log_prompts: bool) -> dict[str, object]:
    chat, outcome = done.request, done.outcome
    fields: dict[str, object] = {
        "event": "request",
        "request_id": chat.request_id,
        "tenant": chat.tenant,
        "workflow": chat.workflow,
        "endpoint": done.endpoint,
        "model": done.model,
        "tier": done.tier,
        "task": done.task,
        "rule": outcome.decision.rule if outcome is not None else None,
        "cache": outcome.cache.status if outcome is not None and outcome.cache is not None else None,
        "escalated": outcome.escalated if outcome is not None else None,
        "status": done.status,
        "stream": chat.stream,
        **summary,
    }
    if log_prompts:  # opt-in only: prompts and answers are never logged by default
        fields["prompt"] = chat.messages[-1].content
        fields["completion"] = "".join(done.parts)
    return fields


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[METRICS]
    registry = app.get(REGISTRY)
    if registry is not None:
        for name, engine in registry.engines.items():
            stats = getattr(engine, "stats", None)
            m.slots.labels(name).set(getattr(stats, "active", 0))
            m.queue_depth.labels(name).set(getattr(stats, "queued", 0))
            m.engine_steps.labels(name).set(getattr(stats, "steps", 0))
            m.engine_threads.labels(name).set(getattr(stats, "threads", 0))
            m.engine_tokens.labels(name).set(getattr(stats, "tokens_generated", 0))
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def usage(request: web.Request) -> web.Response:
    """Per-task cost table from the ledger. Admin keys see every tenant; other keys only their own."""
    app = request.app
    ledger = app[ACCOUNTING].ledger
    if ledger is None:
        raise NotFound("the cost ledger is off (accounting.ledger_path: '')", code="ledger_disabled")
    tenant = request[TENANT]
    q = request.query
    wanted = q.get("tenant")
    if app[SETTINGS].auth.enabled and not tenant.settings.admin:
        if wanted not in (None, tenant.name):
            raise PermissionDenied("only an admin key may read another tenant's usage", param="tenant")
        wanted = tenant.name
    await asyncio.to_thread(ledger.flush)
    rows = await asyncio.to_thread(
        ledger.usage, wanted, q.get("workflow"), q.get("task"), _time_param(q, "since"), _time_param(q, "until")
    )
    totals = {k: sum(r[k] or 0 for r in rows) for k in rows[0] if k != "task"} if rows else {}
    counterfactual = app[ACCOUNTING].pricing.counterfactual  # what "saved" is measured against
    body = {"object": "usage", "tasks": rows, "totals": totals, "counterfactual": counterfactual}
    return web.Response(body=orjson.dumps(body), content_type=JSON)


def _time_param(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidRequest(f"{name} must be a unix time or an ISO-8601 date", param=name) from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API routes need a tenant: from the key when auth is on, the default tenant when it is off."""
    path = request.path
    if path.startswith("/v1/"):
        request[TENANT] = request.app[ACCESS].authenticate(request.headers)
    elif path in ("/metrics", "/dashboard/data") or path.startswith("/debug/"):
        request.app[ACCESS].may_scrape(request.headers)  # spend and heap details: admin key or scrape token
    return await handler(request)


# -- application ---------------------------------------------------------------------------------------------


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[IN_FLIGHT] = set()
    quiet_sdk_loggers(settings.server.log_prompts)
    app[FRONTIER] = FrontierTier(settings.frontier)
    app[POLICY] = RoutingPolicy(settings, frontier_models=app[FRONTIER].names)
    app[METRICS] = Metrics(tenant_labels=settings.auth.metrics_tenant_labels)
    app[ACCESS] = AccessControl(settings, app[METRICS].registry)
    app[ACCOUNTING] = Accounting(settings, app[METRICS])
    app.cleanup_ctx.append(_accounting_ctx)
    app.on_response_prepare.append(_stamp_request_id)
    app.cleanup_ctx.append(_cache_ctx)  # before the engines: the pipeline takes the cache
    app.cleanup_ctx.append(_engines_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/route", route)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/cache/feedback", cache_feedback)
    app.router.add_get("/v1/router/usage", usage)
    app.router.add_get("/metrics", metrics)
    debug.add_routes(app)
    dashboard.add_routes(app)
    rerank.add_routes(app)
    transcription.add_routes(app)
    app.cleanup_ctx.append(_loop_lag_ctx)
    return app


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """A probe task measuring how late the event loop runs timers (router_event_loop_lag_seconds)."""
    probe = asyncio.create_task(probe_loop_lag(app[METRICS]))
    try:
        yield
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)


async def _engines_ctx(app: web.Application) -> AsyncIterator[None]:
    registry = ModelRegistry(app[SETTINGS])
    app[REGISTRY] = registry
    frontier = app[FRONTIER]
    app[PIPELINE] = Pipeline(
        app[SETTINGS], registry, app[POLICY], frontier, cache=app[CACHE], accounting=app[ACCOUNTING]
    )
    app[PIPELINE].compressor.embed_with(app.get(EMBEDDINGS))
    # Load models in the background so /healthz answers at once and /readyz tells when they are ready.
    loading = asyncio.create_task(registry.start())
    await frontier.start()  # clients only: quick, and a provider that cannot start is reported, not fatal
    try:
        yield
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await asyncio.gather(registry.aclose(), frontier.aclose())


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The embedding model and the response cache: both load in the background; /readyz waits for them."""
    settings = app[SETTINGS]
    service = EmbeddingService(settings.embeddings) if settings.embeddings.enabled else None
    if service is not None:
        app[EMBEDDINGS] = service
    cache = app[CACHE] = ResponseCache(settings.cache, service)
    loading = asyncio.create_task(_start_cache(service, cache))
    replicator = cache_replicator(settings.state, cache, app[METRICS].registry)  # replicas sharing a Redis
    try:
        yield
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        if replicator is not None:
            await replicator.aclose()
        await cache.aclose()
        if service is not None:
            await service.aclose()


async def _start_cache(service: EmbeddingService | None, cache: ResponseCache) -> None:
    if service is not None:
        await service.start()
    await cache.start()


async def _accounting_ctx(app: web.Application) -> AsyncIterator[None]:
    """The ledger opens first and closes last, so every request that ran is written before exit."""
    await app[ACCOUNTING].start()
    try:
        yield
    finally:
        await app[ACCOUNTING].aclose()
        await app[ACCESS].aclose()
