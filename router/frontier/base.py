"""What every frontier provider offers, and how it finds its API key."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from router.config import FrontierModelSettings
from router.errors import UpstreamError
from router.types import ChatRequest, Chunk


class Provider(Protocol):
    """A frontier model. Same streaming shape as a local engine: text deltas, then finish reason and usage.

    Errors raise `router.errors` classes; `retryable` ones may be retried or sent to a fallback, but only
    before the first chunk has been passed on.
    """

    name: str
    settings: FrontierModelSettings

    async def start(self) -> None: ...

    def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def api_key(settings: FrontierModelSettings) -> str:
    """The key from the secrets file or the environment. Never logged, never in an error message."""
    if settings.api_key_file:
        try:
            key = Path(settings.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UpstreamError(f"frontier model {settings.name!r}: cannot read api_key_file: {exc.strerror}") from None
    else:
        env = settings.api_key_env or DEFAULT_KEY_ENV[settings.provider]
        key = os.environ.get(env, "").strip()
        if not key:
            raise UpstreamError(f"frontier model {settings.name!r}: no API key (set {env} or api_key_file)")
    return key
