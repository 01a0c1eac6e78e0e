"""Micro-batching for the small in-process models (the embedder, the reranker): concurrent calls coalesce into
batched calls of the model on one worker thread.

Calls that arrive while a batch runs form the next one; when calls came together last time, a batch also waits
up to `max_wait_s` for company, so a caller alone pays no wait. A call larger than `max_batch` is split, so one
request never builds an oversized batch; past `max_pending` queued inputs a call is refused at once (503 with
Retry-After). A failed batch fails only its callers; a cancelled caller is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from router.errors import EngineError, Overloaded

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(slots=True)
class BatchStats:
    calls: int = 0
    items: int = 0  # inputs batched (texts, pairs)
    batches: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, float]:
        mean = self.items / self.batches if self.batches else 0.0
        return {**{k: getattr(self, k) for k in self.__slots__}, "mean_batch": round(mean, 2)}  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Item(Generic[In, Out]):
    inputs: list[In]
    future: asyncio.Future[Out] = field(repr=False)


class Batcher(Generic[In, Out]):
    """`work(inputs) -> result` batched; `rows(result, start, stop, total)` cuts one caller's part out of a
    batch's result and `concat(parts)` joins the parts of a split call. `what` names the model in errors."""

    def __init__(
        self,
        work: Callable[[list[In]], Out],
        *,
        rows: Callable[[Out, int, int, int], Out],
        concat: Callable[[list[Out]], Out],
        what: str,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        max_pending: int | None = None,
    ) -> None:
        self._work, self._rows, self._concat, self.what = work, rows, concat, what
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending if max_pending is not None else max_batch * 64
        self._pending: deque[_Item[In, Out]] = deque()
        self._pending_inputs = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=what.replace(" ", "-"))
        self._task: asyncio.Task[None] | None = None
        self._last_callers = 1
        self.stats = BatchStats()

    async def submit(self, inputs: Sequence[In]) -> Out:
        inputs = list(inputs)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.what} batcher")
        if self._pending_inputs + len(inputs) > self.max_pending:
            raise Overloaded(f"the {self.what} is saturated; retry shortly", retry_after=1)
        self.stats.calls += 1
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(inputs), self.max_batch):
            item: _Item[In, Out] = _Item(inputs[start : start + self.max_batch], loop.create_future())
            self._pending.append(item)
            self._pending_inputs += len(item.inputs)
            futures.append(item.future)
        self._wakeup.set()
        if len(futures) == 1:
            return await futures[0]
        return self._concat(list(await asyncio.gather(*futures)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_wait_s > 0 and self._last_callers > 1 and self._pending_inputs < self.max_batch:
                await self._fill(loop.time() + self.max_wait_s)
            batch = self._take()
            if batch:
                await self._serve(loop, batch)

    async def _fill(self, deadline: float) -> None:
        """Calls came in together last time: give this batch a moment to fill."""
        while self._pending_inputs < self.max_batch:
            self._wakeup.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    async def _serve(self, loop: asyncio.AbstractEventLoop, batch: list[_Item[In, Out]]) -> None:
        inputs = [x for item in batch for x in item.inputs]
        self._last_callers = len(batch)
        self.stats.batches += 1
        self.stats.items += len(inputs)
        self.stats.largest_batch = max(self.stats.largest_batch, len(inputs))
        try:
            result = await loop.run_in_executor(self._executor, self._work, inputs)
        except Exception as exc:
            log.exception("%s batch of %d inputs failed", self.what, len(inputs))
            error = EngineError(f"the {self.what} failed: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        start = 0
        for item in batch:
            stop = start + len(item.inputs)
            if not item.future.done():  # the caller may have gone (cancelled)
                item.future.set_result(self._rows(result, start, stop, len(inputs)))
            start = stop

    def _take(self) -> list[_Item[In, Out]]:
        batch: list[_Item[In, Out]] = []
        size = 0
        while self._pending:
            item = self._pending[0]
            if item.future.done():  # cancelled while waiting: drop it
                self._pending.popleft()
                self._pending_inputs -= len(item.inputs)
                continue
            if batch and size + len(item.inputs) > self.max_batch:
                break
            self._pending.popleft()
            self._pending_inputs -= len(item.inputs)
            batch.append(item)
            size += len(item.inputs)
        return batch

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(EngineError(f"the {self.what} is shutting down"))
        # Wait for a batch already running: the model must not be freed under it.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
