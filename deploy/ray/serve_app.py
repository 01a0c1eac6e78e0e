"""Ray Serve: the router as a Serve deployment, local engines as separate deployments with their own autoscaling.

    pip install "ray[serve]==2.60.*" "hybrid-router[local,redis]"
    ray start --head
    serve run deploy/ray/serve_config.yaml          # or: serve deploy deploy/ray/serve_config.yaml

Each Serve replica runs one ordinary `hybrid-router` server (the same aiohttp app as `hybrid-router serve`) on a
loopback port inside the replica, and the deployment forwards Serve's HTTP requests to it, streaming the answer
back unchanged (SSE included). So every feature, wire format and error body is the router's own; Serve adds
placement, replica autoscaling and the HTTP proxy in front.

Two applications (serve_config.yaml):
  engine   `hybrid-router serve` with only the local model (llama.cpp or vLLM), route prefix /engine: scale it on
           GPU/CPU capacity.
  router   the router, route prefix /: its config names the engine as `engine: openai_http` at the Serve proxy
           (http://127.0.0.1:8000/engine/v1 on every node) and shares budgets, limits and the cache through one
           Redis (`state.url`), so N router replicas enforce one budget and share one cache.

Run on a local Ray cluster by tests/state/test_ray_serve.py (engine application + 2 router replicas, one Redis)
and deploy/ray/smoke.sh; see docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from ray import serve
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


def _die_with_parent() -> None:
    """Linux: the router process gets SIGTERM when its replica's worker dies (Serve kills replicas hard)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (a unit test of the class)
        return f"pid-{os.getpid()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@serve.deployment(ray_actor_options={"num_cpus": 1})
class RouterServer:
    """One hybrid-router server per replica, behind Serve's proxy. `config_path`: the router's YAML config."""

    def __init__(self, config_path: str) -> None:
        self.config_path = os.path.expandvars(config_path)
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self.replica = _replica_id()

    async def _ensure(self) -> aiohttp.ClientSession:
        # A separate process, not the replica's own loop: the router runs uvloop, its engine worker processes and
        # its own signal handling (SIGTERM drain) exactly as `hybrid-router serve` does.
        async with self._lock:
            if self.proc is None or self.proc.returncode is not None:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "router.cli", "serve", "--config", self.config_path, "--host", "127.0.0.1",
                    "--port", str(self.port), preexec_fn=_die_with_parent,
                )  # fmt: skip
                self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
                await self._wait_healthy()
        assert self.session is not None
        return self.session

    async def _wait_healthy(self) -> None:
        assert self.session is not None
        for _ in range(600):
            try:
                async with self.session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("hybrid-router did not start within 60 s")

    async def __call__(self, request: Request) -> Any:
        session = await self._ensure()
        path = request.url.path
        prefix = request.scope.get("root_path", "")
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :] or "/"
        url = f"http://127.0.0.1:{self.port}{path}"
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        upstream = await session.request(request.method, url, data=await request.body(), headers=headers)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        out_headers["x-serve-replica"] = self.replica  # which replica answered (tests, debugging balance)
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream.content.iter_any():
                        yield chunk
                finally:
                    upstream.release()

            return StreamingResponse(relay(), status_code=upstream.status, headers=out_headers)
        body = await upstream.read()
        upstream.release()
        return Response(body, status_code=upstream.status, headers=out_headers)

    async def check_health(self) -> None:
        """Serve's health check: the router process answers /healthz (a dead one is restarted by Serve)."""
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"hybrid-router exited with {self.proc.returncode}")

    def __del__(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()


def app(args: dict[str, str]) -> Any:
    """Serve application builder: `import_path: deploy.ray.serve_app:app`, `args: {config: ...}`."""
    return RouterServer.bind(args["config"])
