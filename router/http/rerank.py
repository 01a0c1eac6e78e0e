"""POST /v1/rerank in the Cohere/Jina shape, as vLLM and llama.cpp's server serve it.

Request: `query` (string), `documents` (strings or {"text": ...} objects), optional `model` (the configured local
name; omitted: that one), `top_n` (default: all), `return_documents` (default true, as vLLM). Response:
{"id", "model", "results": [{"index", "relevance_score", "document": {"text"}}] best first, "usage"}. Documents
longer than the model's window are scored on their beginning; `x-router-truncated-inputs` counts them.

Routing: the local model answers; `model` equal to `rerank.fallback_model` goes to `rerank.fallback_url`, and so
does a request the local model cannot answer (loading, failed, saturated) when a fallback is configured. The
answer says which in `x-router-tier` (local | frontier) and, for a fallback, `x-router-fallback`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiohttp import web

from router.config import RerankSettings
from router.engines.rerank import RerankService, Scores
from router.errors import EngineError, InvalidRequest, NotFound, Overloaded, UpstreamError
from router.http import local_services
from router.http.errors import JSON
from router.http.openai import parse_json
from router.http.validate import opt_bool, opt_int, opt_str

RERANK = web.AppKey("rerank", RerankService)
RERANK_HTTP = web.AppKey("rerank_http", aiohttp.ClientSession)


@dataclass(slots=True)
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int
    return_documents: bool
    remote: bool  # addressed to the configured fallback model


def parse_rerank_request(body: dict[str, Any], settings: RerankSettings) -> RerankRequest:
    name = opt_str(body, "model")
    if name is None or name == settings.name:
        name, remote = settings.name, False
    elif settings.fallback_model is not None and name == settings.fallback_model:
        remote = True
    else:
        served = [n for n in (settings.name, settings.fallback_model) if n]
        raise NotFound(
            f"The model {name!r} does not exist or is not a rerank model. Rerank models: {', '.join(served)}",
            param="model",
            code="model_not_found",
        )
    query = opt_str(body, "query", required=True) or ""
    if not query.strip():
        raise InvalidRequest("query must not be empty", param="query")
    raw = body.get("documents")
    if type(raw) is not list or not raw:
        raise InvalidRequest("documents must be a non-empty array of strings or {text} objects", param="documents")
    if len(raw) > settings.max_documents:
        raise InvalidRequest(
            f"documents may hold at most {settings.max_documents} items, got {len(raw)}", param="documents"
        )
    documents = []
    for i, doc in enumerate(raw):
        if type(doc) is dict and type(doc.get("text")) is str:
            doc = doc["text"]
        if type(doc) is not str:
            raise InvalidRequest(f"documents[{i}] must be a string or an object with a text string", param="documents")
        documents.append(doc)
    top_n = opt_int(body, "top_n", lo=1)
    return_documents = opt_bool(body, "return_documents", default=True)
    return RerankRequest(name, query, documents, min(top_n or len(documents), len(documents)), return_documents, remote)


def rerank_body(request: RerankRequest, scores: Scores) -> dict[str, Any]:
    order = np.argsort(-scores.values, kind="stable")[: request.top_n]
    results = []
    for i in order.tolist():
        result: dict[str, Any] = {"index": i, "relevance_score": float(scores.values[i])}
        if request.return_documents:
            result["document"] = {"text": request.documents[i]}
        results.append(result)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": request.model,
        "results": results,
        "usage": {"prompt_tokens": scores.tokens, "total_tokens": scores.tokens},
    }


async def _remote(app: web.Application, request: RerankRequest) -> dict[str, Any]:
    """The configured fallback endpoint; its answer is checked for the shape before it is relayed."""
    settings = app[RERANK].settings
    assert settings.fallback_url is not None and settings.fallback_model is not None
    headers = {}
    if settings.fallback_api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(settings.fallback_api_key_env, '')}"
    payload = {
        "model": settings.fallback_model,
        "query": request.query,
        "documents": request.documents,
        "top_n": request.top_n,
        "return_documents": request.return_documents,
    }
    timeout = aiohttp.ClientTimeout(total=settings.fallback_timeout_s)
    try:
        async with app[RERANK_HTTP].post(
            settings.fallback_url, data=orjson.dumps(payload), headers=headers, timeout=timeout
        ) as response:
            raw = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"the fallback reranker could not be reached: {type(exc).__name__}") from None
    if status != 200:
        raise UpstreamError(f"the fallback reranker answered {status}")
    try:
        body = orjson.loads(raw)
        results = body["results"]
        ok = type(results) is list and all(type(r.get("index")) is int and "relevance_score" in r for r in results)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise UpstreamError("the fallback reranker's answer is not a rerank response")
    body.setdefault("model", settings.fallback_model)
    return body


async def rerank(request: web.Request) -> web.Response:
    app = request.app
    service = app.get(RERANK)
    if service is None:
        raise NotFound(
            "reranking is disabled on this server (rerank.enabled: false, or embeddings.enabled: false)",
            code="unknown_url",
        )
    parsed = parse_rerank_request(parse_json(await request.read()), service.settings)
    headers = {"x-router-tier": "frontier" if parsed.remote else "local"}
    if parsed.remote:
        body = await _remote(app, parsed)
    else:
        try:
            scores = await service.score(parsed.query, parsed.documents)
            body = rerank_body(parsed, scores)
            if scores.truncated:  # as /v1/embeddings: long documents are scored on their beginning
                headers["x-router-truncated-inputs"] = str(scores.truncated)
        except (EngineError, Overloaded) as exc:
            if service.settings.fallback_url is None:
                raise
            headers = {"x-router-tier": "frontier", "x-router-fallback": exc.code or exc.type}
            body = await _remote(app, parsed)
    return web.Response(body=orjson.dumps(body), content_type=JSON, headers=headers)


async def _rerank_ctx(app: web.Application) -> AsyncIterator[None]:
    from router.app import EMBEDDINGS, SETTINGS  # the app's keys (imported here: app.py imports this module)

    settings = app[SETTINGS].rerank
    if not app[SETTINGS].rerank_served:
        yield
        return
    service = app[RERANK] = RerankService(settings, app.get(EMBEDDINGS))
    session = app[RERANK_HTTP] = aiohttp.ClientSession()
    await service.start()  # the embedding engine: nothing to load; a cross-encoder: a few hundred ms
    try:
        yield
    finally:
        await service.aclose()
        await session.close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_rerank_ctx)
    local_services.register(app, "rerank", RERANK, "/v1/rerank", rerank)  # counted; in /v1/models and /readyz
