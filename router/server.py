"""Run the application on a socket: used by the CLI and by tests that need a real server."""

from __future__ import annotations

import asyncio

from aiohttp import web

from router.app import IN_FLIGHT, REGISTRY, build_app
from router.config import Settings
from router.http.protocol import ApiErrorRunner


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build_app(settings)
        # handler_cancellation: a client that disconnects cancels its handler, which stops its generation.
        # Chat requests are drained by `stop`; what is left for aiohttp's own shutdown is brief.
        self._runner = ApiErrorRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
        self._site: web.TCPSite | None = None
        self.host = settings.server.host
        self.port = settings.server.port

    async def start(self) -> None:
        """Listen, then wait until every model has loaded or failed (see `failures`). OSError if it cannot bind."""
        await self._runner.setup()
        server = self.settings.server
        # Several worker processes share one port (router/workers.py): the kernel balances connections over them.
        site = self._site = web.TCPSite(
            self._runner, server.host, server.port, reuse_address=True, reuse_port=server.workers > 1
        )
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.host, self.port = self._runner.addresses[0][:2]
        await self.app[REGISTRY].started.wait()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def failures(self) -> dict[str, str]:
        return self.app[REGISTRY].failures

    async def stop(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish for `limits.drain_timeout_s`, then cancel the rest
        (a stream cut this way ends with an in-band error while its connection is still open), then close."""
        if self._site is not None:
            await self._site.stop()
        in_flight = self.app[IN_FLIGHT]
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=self.settings.limits.drain_timeout_s)
        for task in list(in_flight):
            task.cancel()
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=1.0)
        await self._runner.cleanup()
