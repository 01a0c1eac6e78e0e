"""Run the application on a socket: used by the CLI and by tests that need a real server."""

from __future__ import annotations

from aiohttp import web

from router.app import REGISTRY, build_app
from router.config import Settings


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build_app(settings)
        # handler_cancellation: a client that disconnects cancels its handler, which stops its generation.
        # shutdown_timeout: on stop, in-flight requests (streams too) get this long to finish before cancellation.
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=settings.limits.drain_timeout_s
        )
        self.host = settings.server.host
        self.port = settings.server.port

    async def start(self) -> None:
        """Listen, then wait until every model has loaded or failed (see `failures`). OSError if it cannot bind."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.server.host, self.settings.server.port, reuse_address=True)
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
        await self._runner.cleanup()
