"""Cache keys: the hard key every hit must match exactly, and the canonical exact key.

A key is canonical JSON (orjson, sorted object keys) of everything that can change an answer:

    hard key   API surface, tenant, the decided tier and model, sampling (temperature, top_p, max_tokens, stop,
               seed, logprobs), response_format, tools and tool_choice
    exact key  hard key + every message
    namespace  hard key + the context of the prompt: the system messages (and, for multi-turn matching, every
               earlier turn); one HNSW index per namespace, so a semantic match can never cross a hard key

The dictionaries are indexed by `fnv1a_64` of those bytes (the compiled fast path: stable across processes, so
snapshots keep their keys), and a hit compares the stored bytes too: a hash collision is a miss, never a wrong
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from router.config import CacheSettings
from router.fastpath import fnv1a_64
from router.routing.policy import Decision
from router.types import ChatRequest, Message

# Bump when the key layout changes: old snapshot entries then simply never match.
KEY_VERSION = 2
_DUMP = orjson.OPT_SORT_KEYS


@dataclass(frozen=True, slots=True)
class Keys:
    exact: bytes
    exact_hash: int
    namespace: bytes | None = None  # None: the request is not safe for semantic matching
    namespace_hash: int = 0
    prompt: str = ""  # the text matched semantically: the last user message


def _message(m: Message) -> list[Any]:
    calls = [[c.id, c.name, c.arguments] for c in m.tool_calls] if m.tool_calls else None
    return [m.role, m.content, m.name, calls, m.tool_call_id, m.is_error]


def _hard(request: ChatRequest, decision: Decision) -> list[Any]:
    s, fmt = request.sampling, request.response_format
    tools = [[t.name, t.description, t.parameters] for t in request.tools]
    return [
        KEY_VERSION,
        request.api,
        request.tenant,
        decision.tier,
        decision.model or "",
        [s.temperature, s.top_p, s.max_tokens, list(s.stop), s.seed, s.logprobs, s.top_logprobs],
        [fmt.type, fmt.name, fmt.json_schema],
        tools,
        request.tool_choice,
        request.parallel_tool_calls,
    ]


def semantic_safe(request: ChatRequest, settings: CacheSettings) -> bool:
    """Near-deterministic requests whose answer depends on one user prompt (the configured default)."""
    messages = request.messages
    if request.tools or request.sampling.temperature > settings.semantic_max_temperature:
        return False
    last = messages[-1]
    if last.role != "user" or not last.content.strip():
        return False
    if settings.semantic_multi_turn:
        # Earlier turns are in the namespace (exact); tool traffic carries details embeddings blur.
        return all(m.role != "tool" and not m.tool_calls for m in messages)
    return all(m.role == "system" for m in messages[:-1])


_SPACE = re.compile(r"\s+")


def embedding_text(prompt: str) -> str:
    """What the semantic tier embeds: whitespace runs and closing punctuation say nothing about the request, yet
    move MiniLM's vector ("What is the GDP of Germany" vs "…?": 0.90), so they are dropped before embedding."""
    return _SPACE.sub(" ", prompt).strip().rstrip("?.!").rstrip()


def cache_keys(request: ChatRequest, decision: Decision, settings: CacheSettings, semantic: bool) -> Keys:
    hard = _hard(request, decision)
    messages = [_message(m) for m in request.messages]
    exact = orjson.dumps(["exact", hard, messages], option=_DUMP)
    if not (semantic and semantic_safe(request, settings)):
        return Keys(exact, fnv1a_64(exact))
    namespace = orjson.dumps(["namespace", hard, messages[:-1]], option=_DUMP)
    return Keys(exact, fnv1a_64(exact), namespace, fnv1a_64(namespace), request.messages[-1].content)
