"""The configured local models: build their engines, start them in the background, answer readiness."""

from __future__ import annotations

import asyncio
import logging

from router.config import ModelSettings, Settings
from router.engines.base import Engine
from router.errors import EngineError, NotFound, Overloaded

log = logging.getLogger(__name__)


def build_engine(settings: ModelSettings, log_level: str = "info") -> Engine:
    # Imports are lazy so that a missing optional dependency only matters for the engine that needs it.
    from router.engines.supervisor import SupervisedEngine

    if settings.engine == "llamacpp" and settings.isolation == "process":
        from router.engines.worker_client import WorkerClient

        return SupervisedEngine(settings, lambda: WorkerClient(settings, log_level), "process")
    if settings.engine == "llamacpp":
        from router.engines.llamacpp_batched import BatchedLlamaCppEngine

        return SupervisedEngine(settings, lambda: BatchedLlamaCppEngine(settings), "inprocess")
    if settings.engine == "vllm":
        from router.engines.vllm import VLLMEngine

        return SupervisedEngine(settings, lambda: VLLMEngine(settings), "vllm")
    if settings.engine == "openai_http":
        import os

        from router.engines.openai_http import OpenAIHTTPEngine

        assert settings.base_url is not None  # checked by the config
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        return OpenAIHTTPEngine(
            settings.name,
            base_url=settings.base_url,
            upstream_model=settings.upstream_model or settings.name,
            api_key=key,
            timeout_s=settings.timeout_s,
        )
    raise EngineError(f"model {settings.name!r}: engine {settings.engine!r} is not available in this build")


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        level = settings.server.log_level
        self.engines: dict[str, Engine] = {m.name: build_engine(m, level) for m in settings.models}
        self._ready: set[str] = set()
        self.failures: dict[str, str] = {}
        self.started = asyncio.Event()  # set once every engine has loaded or failed

    async def start(self) -> None:
        """Start every engine concurrently; a failure is recorded (readyz reports it), not raised."""
        try:
            await asyncio.gather(*(self._start(name, engine) for name, engine in self.engines.items()))
        finally:
            self.started.set()

    async def _start(self, name: str, engine: Engine) -> None:
        try:
            await engine.start()
        except Exception as exc:
            self.failures[name] = str(exc) or type(exc).__name__
            log.error("model %s failed to start: %s", name, self.failures[name])
        else:
            self._ready.add(name)

    async def aclose(self) -> None:
        await asyncio.gather(*(e.aclose() for e in self.engines.values()), return_exceptions=True)

    @property
    def ready(self) -> bool:
        """Every engine loaded and serving now (a crashed engine that is restarting is not)."""
        return len(self._ready) == len(self.engines) and all(getattr(e, "up", True) for e in self.engines.values())

    def is_up(self, name: str) -> bool:
        engine = self.engines.get(name)
        return engine is not None and name in self._ready and getattr(engine, "up", True)

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, engine in self.engines.items():
            status = getattr(engine, "status", None)
            if status is not None:
                out[name] = status()
            else:
                out[name] = {"state": "up" if name in self._ready else self.failures.get(name, "starting")}
        return out

    def get(self, name: str) -> Engine:
        engine = self.engines.get(name)
        if engine is None:
            raise NotFound(
                f"The model {name!r} does not exist. Available models: {', '.join(self.engines)}",
                param="model",
                code="model_not_found",
            )
        if name not in self._ready:
            if name in self.failures:
                raise EngineError(f"model {name!r} failed to start: {self.failures[name]}")
            raise Overloaded(f"model {name!r} is still loading", retry_after=1)
        if not getattr(engine, "up", True):
            raise engine.unavailable()  # type: ignore[attr-defined]
        return engine
