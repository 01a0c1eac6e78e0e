"""The server's side of one engine worker process (router/engines/worker_main.py): the Engine interface over msgpack
frames on a socket pair.

One `WorkerClient` is one process, from spawn to exit; `router.engines.supervisor` starts a new one when it dies.
Every in-flight request of a dying worker ends with an `EngineError` naming how it died (signal, exit code, stall),
which the HTTP layer sends as an error response, or as an in-band error event when the stream had begun.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack

from router.config import ModelSettings
from router.engines import wire
from router.engines.base import Capabilities
from router.engines.worker_main import EXIT_FATAL
from router.errors import EngineError, EngineUnavailable
from router.types import ChatRequest, Chunk

log = logging.getLogger(__name__)

_END = object()
_START_TIMEOUT_S = 600.0  # loading a large GGUF from a slow disk can take minutes
_STOP_GRACE_S = 10.0


@dataclass(slots=True)
class WorkerStats:
    """The worker's engine counters, as of its last heartbeat."""

    active: int = 0
    queued: int = 0
    slots_busy: int = 0
    steps: int = 0
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    tokens_generated: int = 0
    last_cancel_overrun: int = 0
    threads: int = 0  # llama.cpp threads in use (the worker's ThreadTuner)
    thread_switches: int = 0
    seen: int = 0  # how many of the server's frames the worker had read when it took these figures


_STAT_FIELDS = frozenset(WorkerStats.__slots__)


class WorkerClient:
    def __init__(self, settings: ModelSettings, log_level: str = "info") -> None:
        self.name = settings.name
        self.settings = settings
        self.model_path = settings.path or _embedded_path()
        self.capabilities = Capabilities(chat=True, json_schema=True, logprobs=True, context_window=settings.n_ctx)
        self.stats = WorkerStats()
        self.cpu: dict[str, Any] | None = None
        self.pid: int | None = None
        self.fatal = False  # the worker said it cannot run here: restarting will not help
        self.exit_reason: str | None = None
        self.last_heartbeat = 0.0
        self._last_progress = 0.0  # when `steps` last moved (or nothing was active)
        self._log_level = log_level
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._counts: dict[int, asyncio.Future[int]] = {}
        self._ids = itertools.count()
        self._pack = msgpack.Packer().pack
        self._sent = 0
        self._dead = asyncio.Event()
        self._fatal_message: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "router.engines.worker_main",
                "--fd",
                str(child.fileno()),
                "--settings",
                self.settings.model_dump_json(),
                "--log-level",
                self._log_level,
                "--parent",
                str(os.getpid()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        self._ready = loop.create_future()
        self._reader_task = asyncio.create_task(self._read(reader))
        died = asyncio.ensure_future(self._dead.wait())
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                await asyncio.wait({self._ready, died}, return_when="FIRST_COMPLETED")
        except TimeoutError:
            self.kill()
            raise EngineError(
                f"model {self.name!r}: the worker did not load the model in {_START_TIMEOUT_S:.0f} s"
            ) from None
        finally:
            died.cancel()
        if not self._ready.done():
            await self._dead.wait()
            self.fatal = self._fatal_message is not None or self._proc.returncode == EXIT_FATAL
            why = self._fatal_message or f"the worker exited while loading ({self.exit_reason})"
            raise EngineError(f"model {self.name!r}: {why}")
        info = self._ready.result()
        chat, embeddings, json_schema, logprobs, window = info["capabilities"]
        self.capabilities = Capabilities(chat, embeddings, json_schema, logprobs, window)
        self.cpu = info.get("cpu")
        self.last_heartbeat = self._last_progress = time.monotonic()

    async def wait_dead(self) -> str:
        """Resolve when the process has exited, with how it ended."""
        await self._dead.wait()
        return self.exit_reason or "exited"

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._dead.is_set()

    async def health(self) -> bool:
        return self.alive and self.stalled_for() is None

    def stalled_for(self, limit_s: float | None = None) -> float | None:
        """Seconds without a heartbeat, or with requests in flight and no decode step; None: making progress."""
        limit = self.settings.stall_timeout_s if limit_s is None else limit_s
        now = time.monotonic()
        quiet = now - self.last_heartbeat
        if quiet > limit:
            return quiet
        stuck = now - self._last_progress
        return stuck if stuck > limit else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    async def aclose(self) -> None:
        """Ask the worker to finish (it frees the model), then make sure it is gone."""
        if self._proc is None:
            return
        if self.alive:
            self._send(["stop"])
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await self._dead.wait()
            except TimeoutError:
                self.kill()
        self.kill()
        await self._proc.wait()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)

    # -- requests --------------------------------------------------------------------------------------------

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if not self.alive:
            raise EngineError(f"model {self.name!r}: the engine worker is not running")
        rid = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[rid] = queue
        self._send(["gen", rid, wire.encode_request(request, asyncio.get_running_loop().time())])
        ended = False
        try:
            while True:
                item = await queue.get()
                if type(item) is Chunk:
                    yield item
                elif item is _END:
                    ended = True
                    return
                else:
                    ended = True
                    raise item
        finally:
            self._streams.pop(rid, None)
            if not ended and self.alive:
                self._send(["abort", rid])  # client gone or deadline: free the sequence in the worker

    async def count_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens of a chat request under the model's own template and tokenizer."""
        if not self.alive:
            raise EngineError(f"model {self.name!r}: the engine worker is not running")
        rid = next(self._ids)
        future = self._counts[rid] = asyncio.get_running_loop().create_future()
        self._send(["count", rid, wire.encode_request(request, asyncio.get_running_loop().time())])
        try:
            return await future
        finally:
            self._counts.pop(rid, None)

    def _send(self, frame: list[Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(self._pack(frame))
            self._sent += 1

    def in_flight(self) -> int:
        """Requests the worker holds (running or queued). Counted as at least 1 until a heartbeat has seen every
        frame sent, so a just-sent request or abort is never missed."""
        busy = self.stats.slots_busy + self.stats.queued
        return busy if self.stats.seen >= self._sent else max(1, busy)

    # -- frames from the worker ------------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        unpacker = msgpack.Unpacker(use_list=True, raw=False)
        streams = self._streams
        decode_chunk = wire.decode_chunk
        try:
            while data := await reader.read(1 << 16):
                unpacker.feed(data)
                for frame in unpacker:
                    kind = frame[0]
                    if kind == "c":
                        queue = streams.get(frame[1])
                        if queue is not None:
                            queue.put_nowait(decode_chunk(frame))
                    elif kind == "end":
                        queue = streams.get(frame[1])
                        if queue is not None:
                            queue.put_nowait(_END)
                    elif kind == "err":
                        self._on_error(frame)
                    elif kind == "hb":
                        self._on_heartbeat(frame[1])
                    elif kind == "n":
                        future = self._counts.get(frame[1])
                        if future is not None and not future.done():
                            future.set_result(frame[2])
                    elif kind == "ready" and self._ready is not None and not self._ready.done():
                        self._ready.set_result(frame[1])
                    elif kind == "fatal":
                        self._fatal_message = frame[1]
        except (ConnectionError, OSError, ValueError, msgpack.ExtraData) as exc:
            log.error("model %s: worker channel broke: %s", self.name, exc)
            self.kill()
        finally:
            assert self._proc is not None
            self.kill()  # a closed or corrupt channel is as good as dead: make sure it is
            code = await self._proc.wait()
            self.exit_reason = self.exit_reason or describe_exit(code)
            self._fail_all()
            if self._writer is not None:
                self._writer.close()
            self._dead.set()

    def _on_error(self, frame: list[Any]) -> None:
        error = wire.decode_error(frame)
        queue = self._streams.get(frame[1])
        if queue is not None:
            queue.put_nowait(error)
        future = self._counts.get(frame[1])
        if future is not None and not future.done():
            future.set_exception(error)

    def _on_heartbeat(self, stats: dict[str, int]) -> None:
        now = time.monotonic()
        s = self.stats
        if stats.get("steps", 0) != s.steps or not stats.get("active", 0):
            self._last_progress = now
        for key, value in stats.items():
            if key in _STAT_FIELDS:  # an unknown counter must not break the heartbeat (and get the worker killed)
                setattr(s, key, value)
        self.last_heartbeat = now

    def _fail_all(self) -> None:
        message = f"model {self.name!r}: the engine worker died ({self.exit_reason}); it is being restarted"
        for queue in self._streams.values():
            queue.put_nowait(EngineUnavailable(message, code="engine_crashed", retry_after=1.0))
        for future in self._counts.values():
            if not future.done():
                future.set_exception(EngineUnavailable(message, code="engine_crashed", retry_after=1.0))

    def mark_stalled(self, seconds: float) -> None:
        self.exit_reason = f"stalled for {seconds:.0f} s, killed"
        self.kill()


def _embedded_path() -> str:
    from router.engines.embedded import default_chat_model

    try:
        return str(default_chat_model())
    except Exception:  # not installed: the worker reports it when it tries to load
        return ""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"
