"""The usage ledger shared by replicas (`state.url: redis://…`).

Each replica appends its ledger rows (never prompt or completion text: the ledger has none) to one Redis stream,
and the same atomic script adds them to per-tenant, per-UTC-day hashes, so every replica's /v1/usage answers the
cluster-wide totals at once. A drainer (router.state.drain: `hybrid-router ledger-drain`, or the replica that
holds the drain lock) copies the stream into the SQL ledger durably, for the CLI, calibration and long history.

    …:ledger:stream                  the rows, MAXLEN ~state.ledger_maxlen (the drainer must keep up with that)
    …:usage:<YYYY-MM-DD>:<tenant>    hash {"<metric>|[workflow, task]": integer} (usd as integer nano-dollars)
    …:usage:<YYYY-MM-DD>:tenants     the set of tenants with rows that day

Redis down: a row waits in memory (at most `state.ledger_buffer` rows, then further rows are dropped and counted
in router_ledger_dropped_total); requests never wait on it. Reads (/v1/usage, the dashboard) get 503
state_unavailable, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections import deque
from dataclasses import astuple
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from router.accounting.ledger import COLUMNS, USAGE_METRICS, Entry
from router.errors import InvalidRequest
from router.state.health import StateHealth, StateUnavailable

log = logging.getLogger(__name__)

NANO = 1_000_000_000
DAY = 86400
BATCH = 256
METRICS = USAGE_METRICS
USD = {"cost_usd", "local_cost_usd", "counterfactual_usd", "saved_usd"}

# KEYS: stream, batch marker, then (day hash, day tenants set) per row.
# ARGV: maxlen, ttl_s, then per row: the row, its tenant, n, and n (field, increment) pairs.
# The marker makes a retried batch (the first try timed out on the client but ran) count once.
APPEND = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then return 0 end
local a = 3
for r = 0, (#KEYS - 2) / 2 - 1 do
  local h, s = KEYS[3 + 2 * r], KEYS[4 + 2 * r]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'row', ARGV[a])
  redis.call('SADD', s, ARGV[a + 1])
  redis.call('EXPIRE', s, ARGV[2])
  local n = tonumber(ARGV[a + 2])
  for i = 1, n do redis.call('HINCRBY', h, ARGV[a + 1 + 2 * i], ARGV[a + 2 + 2 * i]) end
  redis.call('EXPIRE', h, ARGV[2])
  a = a + 3 + 2 * n
end
return 1
"""


def stream_key(prefix: str) -> str:
    return f"{prefix}ledger:stream"


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def increments(e: Entry) -> tuple[int, ...]:
    """One row's contribution to each of METRICS (the same sums as Ledger.usage)."""
    return (
        1,
        int(e.tier == "local"),
        int(e.tier == "frontier"),
        int(e.tier == "advisor"),
        int(e.cache.startswith("hit")),
        int(e.escalated != ""),
        e.prompt_tokens,
        e.completion_tokens,
        round(e.cost_usd * NANO),
        round(e.local_cost_usd * NANO),
        round(e.counterfactual_usd * NANO),
        round(e.saved_usd * NANO),
        e.advisor_frontier_tokens,
        e.advisor_from_scratch_tokens,
    )


def encode(e: Entry) -> bytes:
    return orjson.dumps(astuple(e))


def decode(raw: bytes) -> Entry:
    """A row; one written by an older or newer replica (fewer or more columns) takes the defaults / drops extras."""
    return Entry(**dict(zip(COLUMNS, orjson.loads(raw), strict=False)))


def rows_by_task(sums: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Per-task integer sums → the rows Ledger.usage returns (usd back to dollars)."""
    rows = []
    for task in sorted(sums):
        row: dict[str, Any] = {"task": task}
        for name, value in zip(METRICS, sums[task], strict=True):
            row[name] = value / NANO if name in USD else value
        rows.append(row)
    return rows


class SharedLedger:
    """What Accounting.ledger is with a shared state: the same record/flush/usage/recent as the SQLite Ledger."""

    def __init__(
        self,
        client: Any,
        reader: Any,
        health: StateHealth,
        *,
        prefix: str,
        maxlen: int,
        buffer: int,
        retention_days: float,
        registry: CollectorRegistry | None = None,
        drainer: Any = None,
    ) -> None:
        self.client, self.reader, self.health = client, reader, health  # reader: a sync client, for thread reads
        self.prefix, self.stream, self.maxlen, self.buffer = prefix, stream_key(prefix), maxlen, buffer
        self.ttl_s = int(retention_days * DAY) + 2 * DAY
        self.retention_s = retention_days * DAY
        self.drainer = drainer
        self._pending: deque[Entry] = deque()
        self._inflight: tuple[str, list[Entry]] | None = None
        self.accepted = self.appended = self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped, self._buffered = _metrics(registry)

    async def astart(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._progress, self._lock = asyncio.Event(), asyncio.Event(), asyncio.Lock()
        self._script = self.client.register_script(APPEND)
        self._tasks.append(self._loop.create_task(self._push_forever(), name="ledger-push"))
        if self.drainer is not None:
            self._tasks.append(self._loop.create_task(self.drainer.run_forever(), name="ledger-drain"))

    # -- writing (on the event loop) -----------------------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        if len(self._pending) >= self.buffer:  # Redis has been down a while: the bound, then counted drops
            self.dropped += 1
            self._dropped.inc()
            return
        self._pending.append(entry)
        self.accepted += 1
        self._buffered.set(len(self._pending))
        if self._wake is not None:
            self._wake.set()

    async def _push_forever(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.push()

    async def push(self) -> None:
        """Append what is buffered; on a failure keep it and retry with backoff (until it is pushed)."""
        assert self._lock is not None
        async with self._lock:  # the background pusher and a shutdown's last push: one at a time
            await self._push_locked()

    async def _push_locked(self) -> None:
        backoff = 0.05
        while self._pending:
            if self._inflight is None:  # a batch keeps its marker across retries: it counts once
                n = min(BATCH, len(self._pending))
                self._inflight = (uuid.uuid4().hex, [self._pending[i] for i in range(n)])
            marker, batch = self._inflight
            try:
                await self.health.call("ledger_append", self._append(marker, batch))
            except StateUnavailable:
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.05
            for _ in batch:
                self._pending.popleft()
            self._inflight = None
            self.appended += len(batch)
            self._buffered.set(len(self._pending))
            assert self._progress is not None
            self._progress.set()

    async def _append(self, marker: str, batch: list[Entry]) -> Any:
        keys: list[str] = [self.stream, f"{self.prefix}ledger:batch:{marker}"]
        args: list[Any] = [self.maxlen, self.ttl_s]
        for e in batch:
            day = day_of(e.ts)
            keys += [self._hash(day, e.tenant), f"{self.prefix}usage:{day}:tenants"]
            group = orjson.dumps([e.workflow, e.task]).decode()
            pairs = [(f"{i}|{group}", v) for i, v in enumerate(increments(e)) if v]
            args += [encode(e), e.tenant, len(pairs)]
            for field, value in pairs:
                args += [field, value]
        return await self._script(keys=keys, args=args)

    def _hash(self, day: str, tenant: str) -> str:
        return f"{self.prefix}usage:{day}:{orjson.dumps(tenant).decode()}"

    def flush(self, timeout: float = 2.0) -> None:
        """From a worker thread: wait (bounded) until what was recorded so far is in Redis."""
        if self._loop is None or self._loop.is_closed():
            return
        target = self.accepted
        future = asyncio.run_coroutine_threadsafe(self._until_appended(target), self._loop)
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            future.result(timeout)
        future.cancel()

    async def _until_appended(self, target: int) -> None:
        assert self._progress is not None
        while self.appended < target and self._pending:
            self._progress.clear()
            await self._progress.wait()

    async def aclose(self) -> None:
        """A last bounded push: what Redis cannot take now is logged as dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, 4 * self.health.timeout_s)):
                await self.push()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pending:
            log.warning("ledger: %d rows could not reach Redis before shutdown and are lost", len(self._pending))
            self.dropped += len(self._pending)
            self._dropped.inc(len(self._pending))
        if self.drainer is not None:
            await self.drainer.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()
        with contextlib.suppress(Exception):
            self.reader.close()

    # -- reading (in worker threads, on the sync client) ---------------------------------------------------------

    def _read(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except InvalidRequest:
            raise
        except Exception as exc:  # any client error: 503 state_unavailable, never a 500 or a hang
            self.health.errors.labels(what).inc()
            self.health._down(f"{what}: {type(exc).__name__}: {exc}")
            raise StateUnavailable("the shared usage ledger (Redis) is unavailable; retry shortly") from None

    def usage(
        self,
        tenant: str | None = None,
        workflow: str | None = None,
        task: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Cluster-wide per-task totals: from the day hashes for whole UTC days, else from the stream's rows."""
        whole = all(t is None or t % DAY == 0 for t in (since, until))
        if whole:
            return self._read("ledger_usage", lambda: self._from_days(tenant, workflow, task, since, until))
        return self._read("ledger_usage", lambda: self._from_stream(tenant, workflow, task, since or 0.0, until))

    def _from_days(
        self, tenant: str | None, workflow: str | None, task: str | None, since: float | None, until: float | None
    ) -> list[dict[str, Any]]:
        now = time.time()
        start = max(since if since is not None else 0.0, now - self.retention_s)
        end = min(until if until is not None else now + DAY, now + DAY)
        days = [day_of(t) for t in range(int(start // DAY * DAY), int(end), DAY)]
        if tenant is not None:
            hashes = [self._hash(d, tenant) for d in days]
        else:
            pipe = self.reader.pipeline(transaction=False)
            for d in days:
                pipe.smembers(f"{self.prefix}usage:{d}:tenants")
            members = pipe.execute()
            hashes = [self._hash(d, t.decode()) for d, ts in zip(days, members, strict=True) for t in ts]
        pipe = self.reader.pipeline(transaction=False)
        for h in hashes:
            pipe.hgetall(h)
        sums: dict[str, list[int]] = {}
        for fields in pipe.execute() if hashes else ():
            for field, value in fields.items():
                index, _, group = field.decode().partition("|")
                w, t = orjson.loads(group)
                if (workflow is None or w == workflow) and (task is None or t == task):
                    sums.setdefault(t, [0] * len(METRICS))[int(index)] += int(value)
        return rows_by_task(sums)

    def _from_stream(
        self, tenant: str | None, workflow: str | None, task: str | None, since: float, until: float | None
    ) -> list[dict[str, Any]]:
        if not self._covers(since):
            raise InvalidRequest(
                "with a shared ledger, since/until that are not whole UTC days must lie within the newest "
                f"{self.maxlen} rows (state.ledger_maxlen); use whole days, or `hybrid-router usage` on the drained "
                "SQL ledger",
                param="since",
            )
        sums: dict[str, list[int]] = {}
        for e in self._scan(since, until):
            wanted = (tenant is None or e.tenant == tenant) and (workflow is None or e.workflow == workflow)
            if wanted and (task is None or e.task == task):
                acc = sums.setdefault(e.task, [0] * len(METRICS))
                for i, v in enumerate(increments(e)):
                    acc[i] += v
        return rows_by_task(sums)

    def _covers(self, since: float) -> bool:
        """Whether the stream still holds every row since this time (it was never trimmed, or its oldest is older).
        Approximate trimming never leaves fewer than MAXLEN rows, so a shorter stream was never trimmed."""
        if self.reader.xlen(self.stream) < self.maxlen:
            return True
        oldest = self.reader.xrange(self.stream, "-", "+", count=1)
        return bool(oldest) and int(oldest[0][0].split(b"-")[0]) <= since * 1000

    def _scan(self, since: float, until: float | None) -> Any:
        low, high = f"{int(since * 1000)}", "+" if until is None else f"{int(until * 1000) - 1}"
        while True:
            got = self.reader.xrange(self.stream, low, high, count=5000)
            for _id, fields in got:
                yield decode(fields[b"row"])
            if len(got) < 5000:
                return
            low = "(" + got[-1][0].decode()

    def recent(self, since: float, limit: int = 50_000) -> list[tuple[Any, ...]]:
        """The newest rows since a time, every replica's, for the dashboard (the same columns as Ledger.recent)."""

        def read() -> list[tuple[Any, ...]]:
            got = self.reader.xrevrange(self.stream, "+", f"{int(since * 1000)}", count=limit)
            out = []
            for _id, fields in got:
                e = decode(fields[b"row"])
                money = (e.cost_usd, e.local_cost_usd, e.saved_usd, e.counterfactual_usd)
                out.append((e.tenant, e.tier, e.status, e.cache, e.escalated, e.latency_ms, e.ttft_ms, *money))
            return out

        return self._read("ledger_recent", read)


_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Gauge]] = weakref.WeakKeyDictionary()


def _metrics(registry: CollectorRegistry | None) -> tuple[Counter, Gauge]:
    if registry is not None and registry in _REGISTERED:
        return _REGISTERED[registry]
    made = (
        Counter("router_ledger_dropped", "Ledger rows lost: Redis down past state.ledger_buffer", registry=registry),
        Gauge("router_ledger_buffered", "Ledger rows waiting in memory for Redis", registry=registry),
    )
    if registry is not None:
        _REGISTERED[registry] = made
    return made
