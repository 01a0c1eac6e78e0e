"""Prompt token counts per target: the local model's own tokenizer, the provider's count API, or an estimate.

Used by `POST /v1/messages/count_tokens` and for `message_start.usage.input_tokens` of Anthropic streams.

The estimate (frontier models without a configured count API, local engines without a tokenizer of their own):
the router's fast token estimate (`router.fastpath.estimate_tokens`: one token per short word, one per 5 further
letters of a long word, one per punctuation mark) over every message's text, plus 4 tokens per message for the
role markers, plus the tool definitions as JSON, plus 3 for the reply's priming. It tracks BPE tokenizers of
English text within roughly ±20%; use the provider's count for billing-grade numbers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import orjson

from router.fastpath import estimate_tokens
from router.types import ChatRequest

Method = Literal["model-tokenizer", "provider", "estimate"]

PER_MESSAGE = 4  # role and turn markers of a chat template
PRIMING = 3  # the assistant turn's opening


def estimate_prompt_tokens(request: ChatRequest) -> int:
    total = PRIMING
    for m in request.messages:
        total += PER_MESSAGE + estimate_tokens(m.content)
        for call in m.tool_calls or ():
            total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    for tool in request.tools:
        spec = {"name": tool.name, "description": tool.description or "", "input_schema": tool.parameters}
        total += estimate_tokens(orjson.dumps(spec).decode())
    return total


async def local_prompt_tokens(engine: Any, request: ChatRequest) -> tuple[int, Method]:
    """The engine's own count (its chat template and tokenizer) where it has one, else the estimate.
    Supervised engines count in their worker process (`count_tokens`); others in a thread, off the loop."""
    count = getattr(engine, "count_tokens", None)
    if count is not None:
        return int(await count(request)), "model-tokenizer"
    sync = getattr(engine, "count_prompt_tokens", None)
    if sync is None:
        return estimate_prompt_tokens(request), "estimate"
    return int(await asyncio.to_thread(sync, request)), "model-tokenizer"


async def frontier_prompt_tokens(provider: Any, request: ChatRequest) -> tuple[int, Method]:
    """The provider's count API when configured (`count_tokens: provider`) and offered, else the estimate."""
    count = getattr(provider, "count_tokens", None)
    if count is not None and provider.settings.count_tokens == "provider":
        return await count(request), "provider"
    return estimate_prompt_tokens(request), "estimate"
