"""The request flow, top to bottom: decide the route → execute → hand back a stream of chunks.

The HTTP layer calls `Pipeline.chat` with a wire-neutral request and gets back an `Outcome` whose first chunk has
already arrived: anything that fails before the first token (bad request, unknown model, engine failure) raises
here and becomes a proper HTTP error; after that the answer streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from router.registry import ModelRegistry
from router.routing.policy import Decision, RoutingPolicy
from router.types import ChatRequest, Chunk


@dataclass(slots=True)
class Outcome:
    model: str
    decision: Decision
    first: Chunk
    rest: AsyncIterator[Chunk]
    headers: dict[str, str] = field(default_factory=dict)

    async def chunks(self) -> AsyncIterator[Chunk]:
        yield self.first
        async for chunk in self.rest:
            yield chunk

    async def aclose(self) -> None:
        await self.rest.aclose()  # type: ignore[attr-defined]


class Pipeline:
    def __init__(self, registry: ModelRegistry, policy: RoutingPolicy) -> None:
        self.registry = registry
        self.policy = policy

    async def chat(self, request: ChatRequest) -> Outcome:
        # 1. route: which tier and model, and why (microseconds; no model involved)
        decision = self.policy.decide(request)
        # 2. execute on the decided tier (only the local tier exists so far)
        model = decision.model or self.policy.local_default
        engine = self.registry.get(model)
        stream = engine.generate(request)
        # 3. wait for the first chunk, so failures before any byte is sent become proper HTTP errors
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = Chunk(finish_reason="stop")
        except BaseException:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        return Outcome(model=model, decision=decision, first=first, rest=stream, headers=decision.headers())
