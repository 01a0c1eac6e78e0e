"""OpenAI-compatible frontier APIs (GPT-5, Gemini's OpenAI endpoint, any compatible URL).

The wire work is the external-engine client's (`router/engines/openai_http.py`): one pooled aiohttp session,
always streaming upstream, no buffering. This adds what a frontier model needs on top: its key and its settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from router.config import FrontierModelSettings
from router.engines.openai_http import OpenAIHTTPEngine
from router.frontier.base import api_key
from router.types import ChatRequest, Chunk

OPENAI_BASE_URL = "https://api.openai.com/v1"


class OpenAICompatProvider:
    def __init__(self, settings: FrontierModelSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self._client: OpenAIHTTPEngine | None = None

    async def start(self) -> None:
        s = self.settings
        self._client = OpenAIHTTPEngine(
            s.name,
            base_url=s.base_url or OPENAI_BASE_URL,
            upstream_model=s.model_id,
            api_key=api_key(s),
            timeout_s=s.total_timeout_s,
            connect_timeout_s=s.connect_timeout_s,
        )
        await self._client.start()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        assert self._client is not None, "provider not started"
        if request.sampling.max_tokens is None:
            request.sampling.max_tokens = self.settings.default_max_tokens
        return self._client.generate(request)
