"""Context compression: before a long request goes to the frontier, the local model summarises its older parts.

The system prompt and the latest user turn stay verbatim; everything in between is cut into chunks of about
`chunk_tokens` (on line boundaries), each summarised by the local model (concurrently: the local engine batches),
and replaced by one message holding the summaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from router.config import CompressionSettings
from router.fastpath import estimate_tokens
from router.types import ChatRequest, Message

SUMMARY_INSTRUCTIONS = (
    "Summarise the following part of a conversation or document. Keep every fact, number, name, date and "
    "decision; drop pleasantries and repetition. Reply with the summary only."
)

Summarise = Callable[[str, int], Awaitable[str]]


def request_tokens(request: ChatRequest) -> int:
    return sum(estimate_tokens(m.content) for m in request.messages)


def _split(text: str, chunk_tokens: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        n = estimate_tokens(line)
        while n > chunk_tokens:  # one enormous line: cut it by characters
            cut = max(1, len(line) * chunk_tokens // n)
            chunks.append(line[:cut])
            line = line[cut:]
            n = estimate_tokens(line)
        if size + n > chunk_tokens and current:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        chunks.append("".join(current))
    return chunks


def _calls(message: Message) -> str:
    return "".join(f" (called {c.name} with {c.arguments})" for c in message.tool_calls or ())


async def compress(
    request: ChatRequest, settings: CompressionSettings, summarise: Summarise
) -> tuple[ChatRequest, tuple[int, int] | None]:
    """The request to send, and (tokens before, tokens after) if it was compressed."""
    before = request_tokens(request)
    if not settings.enabled or before <= settings.max_prompt_tokens:
        return request, None
    messages = request.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    older = [m for i, m in enumerate(messages) if m.role != "system" and i < last_user]
    if not older:
        return request, None  # only the latest turn is long, and it stays verbatim
    text = "\n".join(f"[{m.role}] {m.content}{_calls(m)}" for m in older)
    parts = _split(text, settings.chunk_tokens)
    summaries = await asyncio.gather(*(summarise(p, settings.summary_max_tokens) for p in parts))
    summary = Message("user", "Summary of the earlier conversation:\n" + "\n".join(s.strip() for s in summaries))
    kept = [m for i, m in enumerate(messages) if m.role == "system" or i >= last_user]
    first_kept = next((i for i, m in enumerate(kept) if m.role != "system"), len(kept))
    new_messages = [*kept[:first_kept], summary, *kept[first_kept:]]
    compressed = replace(request, messages=new_messages)
    return compressed, (before, request_tokens(compressed))
