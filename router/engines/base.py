"""The local-engine interface every engine implements (llama.cpp, vLLM, external OpenAI-compatible servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from router.types import ChatRequest, Chunk


@dataclass(frozen=True, slots=True)
class Capabilities:
    chat: bool = True
    embeddings: bool = False
    json_schema: bool = False
    logprobs: bool = False
    context_window: int = 0  # tokens; 0 = unknown


@runtime_checkable
class Engine(Protocol):
    """A local model that generates text.

    `generate` yields text deltas as they are produced and ends with one chunk carrying `finish_reason` and
    `usage`. Closing the iterator early (client gone, deadline) must free the engine's slot at once.
    Errors raise `router.errors.RouterError` subclasses (bad request → InvalidRequest, overload → Overloaded,
    anything else → EngineError).
    """

    name: str
    capabilities: Capabilities

    async def start(self) -> None: ...

    def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...
