"""The engine worker process: one local engine, driven over a socket by the server that started it.

    python -m router.engines.worker_main --fd N --settings '<ModelSettings JSON>' [--log-level info]

The server owns this process (router/engines/worker_client.py): it passes one end of a socket pair as fd N, reads
`ready` once the model is loaded, then sends requests and aborts. Whatever happens in here, a segfault in native
code, an out-of-memory kill, a wedged decode step, ends this process only; the server turns it into errors for
the requests that were in flight and starts a new worker.

The process dies with its parent (PR_SET_PDEATHSIG) and when the socket closes, so a worker is never orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgpack

from router.config import ModelSettings
from router.engines import wire
from router.errors import RouterError

log = logging.getLogger("router.worker")

EXIT_FATAL = 3  # the engine cannot start here (bad path, unsupported CPU): restarting will not help
_HEARTBEAT_S = 0.2
_STATS = (
    "active",
    "queued",
    "slots_busy",
    "steps",
    "started",
    "completed",
    "cancelled",
    "failed",
    "tokens_generated",
    "last_cancel_overrun",
    "threads",
    "thread_switches",
)


class _Outbox:
    """Frames written in one event-loop turn leave in one write: many streams' tokens, one syscall."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._parts: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._pack = msgpack.Packer().pack

    def send(self, frame: list[Any]) -> None:
        if not self._parts:
            self._loop.call_soon(self._flush)
        self._parts.append(self._pack(frame))

    def _flush(self) -> None:
        parts, self._parts = self._parts, []
        if not self._writer.is_closing():
            self._writer.write(b"".join(parts))


async def serve(fd: int, settings: ModelSettings) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    out = _Outbox(writer)
    engine = _build(settings)
    try:
        await engine.start()
    except RouterError as exc:
        out.send(["fatal", exc.message])
        await _drain(writer)
        return EXIT_FATAL
    cpu = getattr(engine, "cpu", None)
    caps = engine.capabilities
    out.send(
        [
            "ready",
            {
                "pid": os.getpid(),
                "capabilities": [caps.chat, caps.embeddings, caps.json_schema, caps.logprobs, caps.context_window],
                "cpu": cpu.as_dict() if cpu is not None else None,
            },
        ]
    )
    tasks: dict[int, asyncio.Task[None]] = {}
    pending: set[asyncio.Task[None]] = set()  # token counts in progress
    seen = [0]  # frames read so far: a heartbeat says which of the server's frames its counters include
    beat = asyncio.create_task(_heartbeat(engine, out, seen))
    unpacker = msgpack.Unpacker(use_list=True, raw=False)
    try:
        while data := await reader.read(1 << 16):
            unpacker.feed(data)
            for frame in unpacker:
                seen[0] += 1
                op = frame[0]
                if op == "gen":
                    request = wire.decode_request(frame[2], loop.time())
                    task = tasks[frame[1]] = asyncio.create_task(_run(engine, frame[1], request, out))
                    task.add_done_callback(lambda _t, rid=frame[1]: tasks.pop(rid, None))
                elif op == "abort":
                    task = tasks.get(frame[1])
                    if task is not None:
                        task.cancel()  # closes the engine's generator: the sequence is freed within one step
                elif op == "count":
                    counting = asyncio.create_task(
                        _count(engine, frame[1], wire.decode_request(frame[2], loop.time()), out)
                    )
                    pending.add(counting)
                    counting.add_done_callback(pending.discard)
                elif op == "stop":
                    return 0
        return 0  # the server closed the socket
    finally:
        beat.cancel()
        for task in list(tasks.values()):
            task.cancel()
        await asyncio.gather(beat, *tasks.values(), return_exceptions=True)
        await engine.aclose()
        await _drain(writer)


def _build(settings: ModelSettings) -> Any:
    if settings.engine != "llamacpp":
        raise SystemExit(f"worker: engine {settings.engine!r} does not run in a worker process")
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine

    return BatchedLlamaCppEngine(settings)


async def _run(engine: Any, rid: int, request: Any, out: _Outbox) -> None:
    stream: AsyncIterator[Any] | None = None
    try:
        stream = engine.generate(request)
        async for chunk in stream:
            out.send(wire.chunk_frame(rid, chunk))
        out.send(["end", rid])
    except asyncio.CancelledError:
        pass  # aborted by the server: it expects nothing more for this id
    except Exception as exc:
        if not isinstance(exc, RouterError):
            log.exception("request %s failed", request.request_id)
        out.send(wire.error_frame(rid, exc))
    finally:
        if stream is not None:
            await stream.aclose()  # type: ignore[attr-defined]


async def _count(engine: Any, rid: int, request: Any, out: _Outbox) -> None:
    try:
        out.send(["n", rid, await asyncio.to_thread(engine.count_prompt_tokens, request)])
    except Exception as exc:
        out.send(wire.error_frame(rid, exc))


async def _heartbeat(engine: Any, out: _Outbox, seen: list[int]) -> None:
    """Liveness and progress: the server kills a worker whose heartbeats stop or whose steps stop advancing."""
    while True:
        stats = engine.stats
        out.send(["hb", {"seen": seen[0], **{k: getattr(stats, k, 0) for k in _STATS}}])
        await asyncio.sleep(_HEARTBEAT_S)


async def _drain(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await asyncio.sleep(0)  # let a pending outbox flush run
        await writer.drain()
        writer.close()


def _die_with_parent(parent: int | None) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # The parent died before prctl took effect (compared with the pid it gave us: in a container the server itself
    # may be pid 1, so "reparented to 1" proves nothing).
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="router.engines.worker_main")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--settings", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--parent", type=int, default=None, help="the server's pid")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops us in order
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s worker[{os.getpid()}] %(name)s: %(message)s",
    )
    settings = ModelSettings.model_validate_json(args.settings)
    try:
        import uvloop

        return uvloop.run(serve(args.fd, settings))
    except ImportError:
        return asyncio.run(serve(args.fd, settings))


if __name__ == "__main__":
    sys.exit(main())
