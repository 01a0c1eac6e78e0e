"""Helpers for the response-cache tests: the real embedding model (loaded once), requests, fake answer streams."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import AsyncIterator

import pytest_asyncio

from router.cache import EmbeddingService, Lookup, ResponseCache
from router.config import DEFAULT_MODEL_NAME, EmbeddingSettings, Settings
from router.errors import EngineError
from router.routing.policy import Decision, RoutingPolicy
from router.types import ChatRequest, Chunk, Message, SamplingParams, Usage

POLICY = RoutingPolicy(Settings())


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embeddings() -> AsyncIterator[EmbeddingService]:
    """The embedded default embedding model (all-MiniLM-L6-v2 int8 ONNX), shared by the session."""
    service = EmbeddingService(EmbeddingSettings())
    await service.start()
    assert service.ready, service.failure
    yield service
    await service.aclose()


def chat(
    prompt: str, *, system: str | None = None, temperature: float = 0.0, tenant: str = "default", **kw: object
) -> ChatRequest:
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    return ChatRequest(
        model=DEFAULT_MODEL_NAME,
        messages=messages,
        sampling=SamplingParams(temperature=temperature, max_tokens=kw.pop("max_tokens", 16)),  # type: ignore[arg-type]
        tenant=tenant,
        **kw,  # type: ignore[arg-type]
    )


def decide(request: ChatRequest) -> Decision:
    return POLICY.decide(request)


async def answer(text: str, finish: str = "stop", fail: bool = False) -> AsyncIterator[Chunk]:
    """The rest of an answer after its first chunk: more text, then the finish chunk (or a failure)."""
    yield Chunk(text=text[len(text) // 2 :])
    if fail:
        raise EngineError("the engine broke mid-answer")
    yield Chunk(finish_reason=finish, usage=Usage(5, 3))  # type: ignore[arg-type]


async def serve(cache: ResponseCache, request: ChatRequest, text: str, **kw: object) -> Lookup:
    """Look up; on a miss play a whole answer through `recording` and wait for the store."""
    lookup = await cache.lookup(request, decide(request))
    if not lookup.hit and lookup.store:
        first = Chunk(text=text[: len(text) // 2])
        async for _ in cache.recording(first, answer(text, **kw), lookup, DEFAULT_MODEL_NAME):  # type: ignore[arg-type]
            pass
        await cache.flush()
    return lookup


def wait_ready(base_url: str, timeout: float = 60) -> None:
    """Poll /readyz: the embedding model and the cache load in the background after the server listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base_url} did not become ready within {timeout} s")
