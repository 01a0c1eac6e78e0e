"""Keeps a crashable local engine serving: watch it, and when it dies, start a new one with backoff.

    starting ──start ok──▶ up ──dies / stalls──▶ down ──restart ok──▶ up
        │                                          │
        └──start fails──▶ failed                   └──says it can never run here──▶ failed

The engine inside is one incarnation (a worker process for llama.cpp, an `AsyncLLM` and its engine-core process
for vLLM) with `wait_dead()`: it resolves when that incarnation is gone, after it has failed its in-flight
requests with an error. While the engine is down, new requests get `EngineUnavailable` (503 / Anthropic 529 with
Retry-After until the next attempt), which the pipeline turns into a frontier fallback for routed requests.
The first start is not retried: a wrong path or an unsupported CPU is a configuration error for /readyz to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from router.config import ModelSettings
from router.engines.base import Capabilities
from router.errors import EngineUnavailable
from router.types import ChatRequest, Chunk

log = logging.getLogger(__name__)

_STABLE_S = 60.0  # an incarnation that lived this long resets the backoff
_WATCH_S = 1.0


class SupervisedEngine:
    def __init__(self, settings: ModelSettings, factory: Callable[[], Any], mode: str) -> None:
        self.name = settings.name
        self.settings = settings
        self.mode = mode  # "process" | "inprocess" | "vllm": shown in /readyz
        self._factory = factory
        self._engine: Any = factory()
        self.model_path = getattr(self._engine, "model_path", settings.path)
        self.state = "starting"
        self.restarts = 0
        self.last_exit: str | None = None
        self.failure: str | None = None
        self._since = time.monotonic()
        self._retry_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- the Engine interface --------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._engine.capabilities

    @property
    def stats(self) -> Any:
        return self._engine.stats

    @property
    def engine(self) -> Any:
        """The current incarnation (tests and benchmarks reach the worker through it)."""
        return self._engine

    @property
    def up(self) -> bool:
        # The incarnation may have died a moment before the supervisor task noticed: ask it too.
        return self.state == "up" and getattr(self._engine, "alive", True)

    async def start(self) -> None:
        try:
            await self._engine.start()
        except BaseException as exc:
            self.state, self.failure = "failed", str(exc)
            await _quietly_close(self._engine)
            raise
        self._mark_up()
        if hasattr(self._engine, "wait_dead"):
            self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if not self.up:
            raise self.unavailable()
        return self._engine.generate(request)

    async def count_tokens(self, request: ChatRequest) -> int:
        if not self.up:
            raise self.unavailable()
        count = getattr(self._engine, "count_tokens", None)
        if count is not None:
            return await count(request)
        return await asyncio.to_thread(self._engine.count_prompt_tokens, request)

    async def health(self) -> bool:
        return self.up and await self._engine.health()

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._engine.aclose()

    def unavailable(self) -> EngineUnavailable:
        wait = None if self._retry_at is None else max(1.0, self._retry_at - time.monotonic())
        if self.state == "failed":
            why = f"failed: {self.failure}"
        elif self.state == "starting":
            why = "still loading"
        elif self.state == "up":  # died a moment ago
            why = "restarting after a crash"
        else:
            why = f"restarting after a crash ({self.last_exit})"
        return EngineUnavailable(f"local model {self.name!r} is {why}", retry_after=wait or 1.0)

    def status(self) -> dict[str, Any]:
        """For /readyz: the engine's real state, not the one it had at load time."""
        engine = self._engine
        out: dict[str, Any] = {
            "state": "down" if self.state == "up" and not self.up else self.state,
            "isolation": self.mode,
            "since_s": round(time.monotonic() - self._since, 1),
            "restarts": self.restarts,
        }
        if self.last_exit:
            out["last_exit"] = self.last_exit
        if self.failure and self.state != "up":
            out["failure"] = self.failure
        if self._retry_at is not None and self.state == "down":
            out["next_attempt_s"] = round(max(0.0, self._retry_at - time.monotonic()), 1)
        pid = getattr(engine, "pid", None)
        if pid:
            out["pid"] = pid
        beat = getattr(engine, "last_heartbeat", 0.0)
        if beat and self.state == "up":
            out["last_heartbeat_s"] = round(time.monotonic() - beat, 2)
        cpu = getattr(engine, "cpu", None)
        if cpu is not None:
            out["cpu"] = cpu if isinstance(cpu, dict) else cpu.as_dict()
        return out

    # -- supervision -----------------------------------------------------------------------------------------

    def _mark_up(self) -> None:
        self.state, self.failure, self._retry_at = "up", None, None
        self._since = time.monotonic()

    async def _supervise(self) -> None:
        s = self.settings
        backoff = s.restart_backoff_s
        while not self._closed:
            lived = time.monotonic() - self._since
            self.last_exit = await self._watch(self._engine)
            self.state, self._since = "down", time.monotonic()
            log.error("model %s: engine died (%s); restarting", self.name, self.last_exit)
            await _quietly_close(self._engine)
            if lived >= _STABLE_S:
                backoff = s.restart_backoff_s
            while not self._closed:
                self._retry_at = time.monotonic() + backoff
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, s.restart_backoff_max_s)
                engine = self._factory()
                try:
                    await engine.start()
                except Exception as exc:
                    self.failure = str(exc)
                    await _quietly_close(engine)
                    if getattr(engine, "fatal", False):
                        self.state = "failed"
                        log.error("model %s: cannot restart, giving up: %s", self.name, exc)
                        return
                    log.error("model %s: restart failed (%s); next attempt in %.1f s", self.name, exc, backoff)
                    continue
                self._engine = engine
                self.restarts += 1
                self._mark_up()
                log.warning("model %s: engine is back (restart %d)", self.name, self.restarts)
                break

    async def _watch(self, engine: Any) -> str:
        """Wait for the incarnation to die; kill it first if it stops making progress."""
        dead = asyncio.ensure_future(engine.wait_dead())
        try:
            while True:
                done, _ = await asyncio.wait({dead}, timeout=_WATCH_S)
                if done:
                    return dead.result()
                stalled = getattr(engine, "stalled_for", None)
                seconds = stalled() if stalled is not None else None
                if seconds is not None:
                    log.error("model %s: no progress for %.0f s; killing the engine", self.name, seconds)
                    engine.mark_stalled(seconds)
        finally:
            dead.cancel()


async def _quietly_close(engine: Any) -> None:
    with contextlib.suppress(Exception):
        await engine.aclose()
