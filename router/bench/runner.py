"""Open-loop and closed-loop load against one target, one load point at a time.

Open loop: requests leave at scheduled times whatever the server does, and latency counts from the scheduled
time, so a server (or a client) that falls behind shows it as latency instead of quietly lowering the load.
Closed loop: `concurrency` workers each send their next request when the previous one ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Literal

import aiohttp

from router.bench.arrivals import Process, schedule
from router.bench.client import Target, send
from router.bench.progress import Counters, Monitor
from router.bench.stats import Dist, RequestRecord
from router.bench.workload import WorkItem

Mode = Literal["open", "closed"]
NewRecord = Callable[[int, float, bool], RequestRecord]
SendOne = Callable[[int, RequestRecord], Awaitable[None]]

# Above these the generator, not the server, may be what the figures measure.
LAG_LIMIT_S = 0.005
LAG_SHARE = 0.05  # of the median latency
CPU_LIMIT = 0.90


@dataclass(frozen=True, slots=True)
class LoadSpec:
    mode: Mode
    level: float  # requests/s (open) or concurrency (closed)
    duration: float | None = None  # seconds after the warm-up
    count: int | None = None  # measured requests
    warmup: float = 0.0  # seconds whose requests are sent but not counted
    process: Process = "poisson"
    burstiness: float = 1.0
    seed: int = 0
    drain_timeout: float = 60.0

    @property
    def label(self) -> str:
        return f"rate {self.level:g}/s" if self.mode == "open" else f"concurrency {int(self.level)}"


@dataclass(slots=True)
class PointResult:
    spec: LoadSpec
    records: list[RequestRecord]
    wall_s: float
    client_cpu_s: float
    loop_lag: Dist

    @property
    def client_cpu_fraction(self) -> float:
        return self.client_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def generator_warnings(self) -> list[str]:
        """Reasons to doubt that the server, not this client, set the figures (empty: none).

        Lag matters when it is a visible share of what is measured: 10 ms is noise next to a 3-minute queue
        and the whole story next to a 2 ms gateway.
        """
        out = []
        if self.client_cpu_fraction >= CPU_LIMIT:
            out.append(f"the load generator used {self.client_cpu_fraction:.0%} of a core")
        measured = [r for r in self.records if not r.warmup]
        e2e = Dist.of(r.e2e for r in measured if r.ok)
        limit = max(LAG_LIMIT_S, LAG_SHARE * e2e.p50) if e2e.n else LAG_LIMIT_S
        lag = Dist.of(r.send_lag for r in measured)
        if self.spec.mode == "open" and lag.n and lag.p99 > limit:
            out.append(f"sends left {lag.p99 * 1e3:.1f} ms after their scheduled time (p99)")
        if self.loop_lag.n and self.loop_lag.p99 > limit:
            out.append(f"the client's event loop lagged {self.loop_lag.p99 * 1e3:.1f} ms (p99)")
        return out


def order(items: Sequence[WorkItem], *, shuffle: bool, seed: int) -> list[WorkItem]:
    """The order requests cycle through the workload: a seeded permutation, or the file's order."""
    out = list(items)
    if shuffle:
        random.Random(seed).shuffle(out)
    return out


async def run_point(
    session: aiohttp.ClientSession,
    target: Target,
    items: Sequence[WorkItem],
    spec: LoadSpec,
    *,
    show_progress: bool = True,
    label: str | None = None,
) -> PointResult:
    if not items:
        raise ValueError("empty workload")
    bodies = [target.body(it) for it in items]
    prompt_chars = [sum(len(m["content"]) for m in it.messages) for it in items]
    headers = target.headers()
    records: list[RequestRecord] = []
    mon = Monitor(
        label or spec.label,
        total_s=spec.duration and spec.duration + spec.warmup,
        total_n=None if spec.duration else spec.count,
        show=show_progress,
    )

    def new_record(i: int, at: float, warm: bool) -> RequestRecord:
        it = items[i % len(items)]
        rec = RequestRecord(
            index=i, item_id=it.id, scheduled=at, task=it.task, expected_tier=it.expected_tier, warmup=warm
        )
        records.append(rec)
        return rec

    async def one(i: int, rec: RequestRecord) -> None:
        k = i % len(items)
        mon.counters.sent += 1
        try:
            await send(session, target, bodies[k], headers, rec, prompt_chars[k])
        finally:
            _count(mon.counters, rec)

    cpu0, wall0 = time.process_time(), perf_counter()
    mon.start()
    try:
        if spec.mode == "open":
            await _open_loop(spec, new_record, one)
        else:
            await _closed_loop(spec, new_record, one)
    finally:
        await mon.stop()
    wall, cpu = perf_counter() - wall0, time.process_time() - cpu0
    _rebase(records, wall0)
    return PointResult(spec, records, wall, cpu, Dist.of(mon.loop_lag))


def _count(c: Counters, rec: RequestRecord) -> None:
    c.done += 1
    if rec.error is not None:
        c.errors += 1


async def _open_loop(spec: LoadSpec, new_record: NewRecord, one: SendOne) -> None:
    offsets = schedule(
        spec.level,
        duration=spec.duration,
        count=spec.count,
        warmup=spec.warmup,
        process=spec.process,
        burstiness=spec.burstiness,
        seed=spec.seed,
    )
    pending: set[asyncio.Task[None]] = set()
    t0 = perf_counter() + 0.01
    for i, off in enumerate(offsets):
        at = t0 + off
        # Sleep, never spin: a spinning client would steal the CPU the server under test needs. Timers are
        # millisecond-grained, so sends leave up to ~1 ms late; that lag is measured and reported.
        slept = False
        while (delay := at - perf_counter()) > 0:
            await asyncio.sleep(max(delay, 0.001))
            slept = True
        if not slept:
            await asyncio.sleep(0)  # behind schedule: still let the requests already started make progress
        task = asyncio.create_task(one(i, new_record(i, at, off < spec.warmup)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        _, late = await asyncio.wait(pending, timeout=spec.drain_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


async def _closed_loop(spec: LoadSpec, new_record: NewRecord, one: SendOne) -> None:
    t0 = perf_counter()
    warm_until = t0 + spec.warmup
    stop_at = warm_until + spec.duration if spec.duration is not None else None
    next_index = 0
    measured = 0

    async def worker() -> None:
        nonlocal next_index, measured
        while True:
            now = perf_counter()
            warm = now < warm_until
            if not warm:
                if (stop_at is not None and now >= stop_at) or (spec.count is not None and measured >= spec.count):
                    return
                measured += 1
            i = next_index
            next_index += 1
            await one(i, new_record(i, now, warm))

    await asyncio.gather(*(worker() for _ in range(int(spec.level))))


def _rebase(records: list[RequestRecord], t0: float) -> None:
    """Make every time relative to the start of the point (readable JSON, comparable plots).

    A request cancelled at the end of the drain never got an end time: it counts as an `unfinished` error.
    """
    now = perf_counter()
    for r in records:
        if r.end == 0.0:
            r.end = now
            r.error = r.error or "unfinished"
        r.scheduled -= t0
        r.sent = r.sent - t0 if r.sent else r.scheduled
        r.end -= t0
        if r.first_token is not None:
            r.first_token -= t0
        r.chunk_times = [t - t0 for t in r.chunk_times]
