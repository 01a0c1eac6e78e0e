"""`hybrid-router serve --workers N`: N server processes on one port, each with its own event loop.

The kernel spreads new connections over the processes (SO_REUSEPORT), so one machine's cores all serve HTTP. The
parent forks the workers before any event loop, thread or model exists, forwards SIGINT/SIGTERM to them (each
drains gracefully) and exits when all have; a worker that dies is reported, not restarted (run the whole under a
supervisor: systemd, Kubernetes). Each worker is a whole router: it loads its own local models and keeps its own
in-memory budgets, rate limits, response cache and metrics, so use `state.url: redis://…` to share budgets,
limits and the cache across workers (docs/scale-out.md), and scrape each worker or read the shared ledger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable

from router.config import Settings

log = logging.getLogger(__name__)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_workers(settings: Settings, run: Callable[[Settings], int]) -> int:
    """Fork `settings.server.workers` processes each calling `run(settings)`; wait for them all."""
    server = settings.server
    if server.port == 0:  # every worker must bind the same port: pick it once, here
        server = server.model_copy(update={"port": _free_port(server.host)})
        settings = settings.model_copy(update={"server": server})
    children: list[int] = []
    for _ in range(server.workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = run(settings)
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(code)
        if code not in (0, -signal.SIGINT, -signal.SIGTERM):
            log.error("worker %d exited with %d", child, code)
            status = status or 1
    return status
