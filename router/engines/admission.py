"""Bounded admission in front of an engine's N slots, shared by the event loop and an engine's worker thread.

A request either takes a free slot at once, or waits in a FIFO queue bounded both by requests and by queued
prompt tokens; past either bound it is refused at once (`Overloaded`, with a Retry-After estimate), never queued
without limit. When a slot is released the head of the queue inherits it directly, so a finishing request hands
its slot over without a round trip through the event loop.

The event loop calls `offer` and `withdraw`; the worker calls `take` and `release`. One lock guards everything;
each call holds it for a few list operations.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from router.errors import EngineError, Overloaded

T = TypeVar("T")

_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 60.0


@dataclass(slots=True)
class QueueStats:
    """Queue figures; written under the admission lock, read freely (ints: a torn read cannot happen)."""

    slots: int = 0
    slots_busy: int = 0  # slots granted (including requests the worker has not picked up yet)
    queued: int = 0  # requests waiting for a slot
    queued_tokens: int = 0  # their prompt tokens
    rejected: int = 0  # refused: queue full (503 / 529)
    expired: int = 0  # deadline passed while waiting
    withdrawn: int = 0  # client went away while waiting


class Admission(Generic[T]):
    def __init__(self, slots: int, max_requests: int, max_tokens: int, stats: QueueStats | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.stats = stats if stats is not None else QueueStats()
        self.stats.slots = slots
        self._cond = threading.Condition(threading.Lock())
        self._granted: list[T] = []  # got a slot, not yet taken by the worker
        self._waiting: deque[tuple[T, int]] = deque()
        self._busy = 0
        self._closed = False
        self._hold_s = 2.0  # moving average of how long a request holds a slot, for Retry-After

    # -- event loop side -------------------------------------------------------------------------------------

    def offer(self, item: T, tokens: int) -> bool:
        """Admit `item`: True if it got a slot, False if it waits; raise Overloaded past the bounds."""
        with self._cond:
            if self._closed:
                raise EngineError("the engine is shutting down")
            if self._busy < self.slots:
                self._busy += 1
                self.stats.slots_busy = self._busy
                self._granted.append(item)
                self._cond.notify()
                return True
            stats = self.stats
            if len(self._waiting) >= self.max_requests or stats.queued_tokens + tokens > self.max_tokens:
                stats.rejected += 1
                raise Overloaded(
                    f"the local model is at capacity ({self.slots} running, {len(self._waiting)} waiting, "
                    f"{stats.queued_tokens} prompt tokens queued); retry later",
                    retry_after=self._retry_after(len(self._waiting)),
                )
            self._waiting.append((item, tokens))
            stats.queued = len(self._waiting)
            stats.queued_tokens += tokens
            return False

    def withdraw(self, item: T, expired: bool = False) -> bool:
        """Take `item` out of the waiting queue; False if it is not there (it has a slot, or never came)."""
        with self._cond:
            for i, (queued, tokens) in enumerate(self._waiting):
                if queued is item:
                    del self._waiting[i]
                    stats = self.stats
                    stats.queued = len(self._waiting)
                    stats.queued_tokens -= tokens
                    if expired:
                        stats.expired += 1
                    else:
                        stats.withdrawn += 1
                    return True
        return False

    def close(self) -> list[T]:
        """Refuse new requests, wake the worker; return the requests it will never run (granted or waiting)."""
        with self._cond:
            self._closed = True
            left = self._granted + [item for item, _ in self._waiting]
            self._granted = []
            self._waiting.clear()
            self.stats.queued = 0
            self.stats.queued_tokens = 0
            self._cond.notify_all()
        return left

    # -- worker side -----------------------------------------------------------------------------------------

    def take(self, block: bool) -> list[T] | None:
        """Requests granted a slot since the last call. With `block`, wait until there is one; None once closed."""
        with self._cond:
            if block:
                while not self._granted and not self._closed:
                    self._cond.wait()
            if self._closed:
                return None
            granted = self._granted
            self._granted = []
            return granted

    def release(self, held_s: float | None = None) -> None:
        """A slot is free: the head of the queue inherits it, or it goes back to the pool."""
        with self._cond:
            if held_s is not None:
                self._hold_s += 0.2 * (held_s - self._hold_s)
            if self._waiting:
                item, tokens = self._waiting.popleft()
                self.stats.queued = len(self._waiting)
                self.stats.queued_tokens -= tokens
                self._granted.append(item)
            else:
                self._busy -= 1
                self.stats.slots_busy = self._busy

    # --------------------------------------------------------------------------------------------------------

    def _retry_after(self, waiting: int) -> float:
        # Roughly when a slot should be free for a newcomer: the queue ahead drains `slots` at a time.
        estimate = self._hold_s * (waiting + 1) / self.slots
        return float(min(_RETRY_MAX_S, max(_RETRY_MIN_S, math.ceil(estimate))))
