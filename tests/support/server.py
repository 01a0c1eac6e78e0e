"""A real router server on a free port, running its own uvloop event loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvloop

from router.config import Settings
from router.server import Server


class ServerThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"port": 0, "host": "127.0.0.1"})}
        )
        self.loop = uvloop.new_event_loop()
        self.server: Server | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="router-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.server = Server(self.settings)
            await self.server.start()
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.server.stop()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._started.wait(120):
            raise RuntimeError("router did not start within 120 s")
        if self._error is not None:
            raise self._error
        assert self.server is not None
        if self.server.failures:
            raise RuntimeError(f"models failed to start: {self.server.failures}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def call(self, coro: object, timeout: float = 30) -> object:
        """Run a coroutine on the server's loop (to inspect its state safely)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    @property
    def app(self):
        assert self.server is not None
        return self.server.app


@contextmanager
def running(settings: Settings) -> Iterator[ServerThread]:
    thread = ServerThread(settings).start()
    try:
        yield thread
    finally:
        thread.stop()
