"""Live progress line and the load generator's own health (event-loop lag, CPU).

One ticker task wakes every 10 ms: its overshoot is the event loop's lag (a busy client delays every
timer, which would silently inflate the latencies it measures), and every 25th tick redraws the bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from time import perf_counter
from typing import TextIO

_TICK = 0.010
_REDRAW_EVERY = 25


@dataclass(slots=True)
class Counters:
    sent: int = 0
    done: int = 0
    errors: int = 0


@dataclass(slots=True)
class Monitor:
    label: str
    total_s: float | None = None  # duration-limited runs: the bar shows time
    total_n: int | None = None  # count-limited runs: the bar shows requests
    show: bool = True
    out: TextIO = field(default_factory=lambda: sys.stderr)
    counters: Counters = field(default_factory=Counters)
    loop_lag: list[float] = field(default_factory=list)
    _start: float = 0.0
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._start = perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.show:
            self._draw(final=True)

    async def _run(self) -> None:
        tick = 0
        while True:
            before = perf_counter()
            await asyncio.sleep(_TICK)
            self.loop_lag.append(max(0.0, perf_counter() - before - _TICK))
            tick += 1
            if self.show and tick % _REDRAW_EVERY == 0:
                self._draw()

    def _draw(self, final: bool = False) -> None:
        c = self.counters
        elapsed = perf_counter() - self._start
        if self.total_n:
            frac = min(1.0, c.done / self.total_n)
        elif self.total_s:
            frac = min(1.0, elapsed / self.total_s)
        else:
            frac = 0.0
        width = 24
        filled = int(frac * width)
        bar = "█" * filled + "░" * (width - filled)
        rate = c.done / elapsed if elapsed > 0 else 0.0
        line = (
            f"\r{self.label} {bar} {frac * 100:3.0f}% {elapsed:6.1f}s  sent {c.sent}  done {c.done}"
            f"  err {c.errors}  in-flight {c.sent - c.done}  {rate:7.1f} req/s"
        )
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()
