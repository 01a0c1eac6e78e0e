"""`POST /v1/messages/count_tokens` (Anthropic shape) and the input count of Anthropic streams' message_start.

The count is the target's: the model the request would be routed to (the same decision as /v1/messages) counts
with its own tokenizer when local, with the provider's count API when configured, else the documented estimate
(router/tokens.py). `x-router-token-count` says which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from router.http.anthropic import parse_messages_request
from router.http.errors import JSON
from router.http.openai import parse_json
from router.tokens import Method, estimate_prompt_tokens, frontier_prompt_tokens, local_prompt_tokens
from router.types import ChatRequest

if TYPE_CHECKING:
    from router.pipeline import Outcome


async def count_tokens(request: web.Request) -> web.Response:
    from router.app import ACCESS, FRONTIER, POLICY, REGISTRY, TENANT  # the app module imports this one

    app = request.app
    body = parse_json(await request.read())
    body.setdefault("max_tokens", 1)  # the count API takes no max_tokens; the messages parser requires one
    chat = parse_messages_request(body, request.headers)
    tenant = request[TENANT]
    chat.tenant = tenant.name
    app[ACCESS].check_model(tenant, chat.model)
    decision = app[POLICY].decide(chat)
    tier = decision.tier if decision.tier in tenant.settings.allowed_tiers else "local"
    method: Method
    if tier == "frontier" and decision.model in app[FRONTIER].providers:
        n, method = await frontier_prompt_tokens(app[FRONTIER].providers[decision.model], chat)
    else:  # local, or advisor: the local model reads the prompt first
        model = decision.model if tier == "local" and decision.model else app[POLICY].local_default
        n, method = await local_prompt_tokens(app[REGISTRY].get(model), chat)
    headers = {**decision.headers(), "x-router-token-count": method}
    return web.Response(body=orjson.dumps({"input_tokens": n}), content_type=JSON, headers=headers)


async def stream_input_tokens(app: web.Application, chat: ChatRequest, outcome: Outcome) -> int:
    """input_tokens for message_start: the upstream's count if it sent one first, else the serving model's."""
    if chat.api != "anthropic" or not chat.stream:
        return 0
    if outcome.first.prompt_tokens:
        return outcome.first.prompt_tokens
    from router.app import REGISTRY

    engine = app[REGISTRY].engines.get(outcome.model)
    if engine is None:  # a frontier model that does not report its count up front
        return estimate_prompt_tokens(chat)
    try:
        return (await local_prompt_tokens(engine, chat))[0]
    except Exception:  # an engine that cannot count now (still loading): the estimate is better than nothing
        return estimate_prompt_tokens(chat)
