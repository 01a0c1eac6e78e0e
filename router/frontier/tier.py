"""The frontier tier: the configured providers, started once, reached through retries, fallbacks and breakers."""

from __future__ import annotations

import asyncio
import logging

from router.config import FrontierModelSettings, FrontierSettings
from router.errors import Unavailable
from router.frontier.base import Provider
from router.frontier.resilience import Resilience, Started
from router.types import ChatRequest

log = logging.getLogger(__name__)


def build_provider(settings: FrontierModelSettings) -> Provider:
    if settings.provider == "anthropic":
        from router.frontier.anthropic import AnthropicProvider

        return AnthropicProvider(settings)
    from router.frontier.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(settings)


class FrontierTier:
    def __init__(self, settings: FrontierSettings) -> None:
        self.settings = settings
        self.providers: dict[str, Provider] = {m.name: build_provider(m) for m in settings.models}
        self.resilience = Resilience(settings.resilience, list(self.providers.values()))
        self.failures: dict[str, str] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.providers)

    async def start(self) -> None:
        async def one(name: str, provider: Provider) -> None:
            try:
                await provider.start()
            except Exception as exc:
                self.failures[name] = str(exc) or type(exc).__name__
                log.error("frontier model %s cannot start: %s", name, self.failures[name])

        await asyncio.gather(*(one(n, p) for n, p in self.providers.items()))

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers.values()), return_exceptions=True)

    def chain(self, model: str) -> list[Provider]:
        """`model` then its configured fallbacks, leaving out providers that failed to start."""
        names = [model, *self.providers[model].settings.fallbacks]
        return [self.providers[n] for n in names if n not in self.failures]

    def fallback_to_local(self, model: str) -> bool:
        return self.providers[model].settings.fallback_to_local

    async def stream(self, request: ChatRequest, model: str) -> Started:
        chain = self.chain(model)
        if not chain:
            raise Unavailable(f"frontier model {model!r} and its fallbacks are unavailable: {self.failures}")
        return await self.resilience.first_chunk(request, chain)
