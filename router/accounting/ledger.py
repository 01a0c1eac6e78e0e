"""The cost ledger: one row per request (never prompt or completion text), in SQLite.

Writes go through a queue to one writer thread that inserts in batches, so recording a request costs the event
loop one `put`. Reads (usage reports) use their own connection; WAL mode lets them run beside the writer.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    id: str
    ts: float
    tenant: str
    workflow: str
    task: str
    tier: str
    model: str
    api: str
    status: str  # ok | error | cancelled
    prompt_tokens: int = 0
    completion_tokens: int = 0
    frontier_tokens: int = 0
    cache: str = ""
    escalated: str = ""
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    cost_usd: float = 0.0  # frontier spend
    local_cost_usd: float = 0.0  # engine time priced per hour
    counterfactual_usd: float = 0.0  # the same tokens on the reference frontier model
    saved_usd: float = 0.0
    advisor_frontier_tokens: int = 0
    advisor_from_scratch_tokens: int = 0
    route_score: float = -1.0  # the learned router's P(frontier) for this request (-1: no routing decision)
    route_rule: str = ""  # the rule that decided


# The per-task usage figures: the SQL `usage()` query's columns after `task`, and the shared ledger's daily totals.
USAGE_METRICS = (
    "requests",
    "local",
    "frontier",
    "advisor",
    "cache_hits",
    "escalations",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "local_cost_usd",
    "counterfactual_usd",
    "saved_usd",
    "advisor_frontier_tokens",
    "advisor_from_scratch_tokens",
)
COLUMNS = [f.name for f in fields(Entry)]
_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}  # annotations are strings (future annotations)
_SCHEMA = f"CREATE TABLE IF NOT EXISTS requests ({', '.join(f'{f.name} {_TYPES[str(f.type)]}' for f in fields(Entry))})"
_DRAINED = "CREATE TABLE IF NOT EXISTS drained (stream_id TEXT PRIMARY KEY, ms INTEGER)"  # shared-stream ids written
_STOP = object()
_DAY = 86400.0


class Ledger:
    def __init__(self, path: str, retention_days: float = 90.0) -> None:
        self.path = path
        self.retention_s = retention_days * _DAY
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self._flushed = threading.Event()

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def prepare(self) -> sqlite3.Connection:
        """The schema (new columns added to an older file), and rows past retention deleted."""
        conn = self._connect()
        conn.execute(_SCHEMA)
        _add_new_columns(conn)
        conn.execute("CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts)")
        conn.execute("CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests(tenant, ts)")
        conn.execute(_DRAINED)
        conn.execute("DELETE FROM requests WHERE ts < ?", (time.time() - self.retention_s,))
        conn.execute("DELETE FROM drained WHERE ms < ?", (int((time.time() - self.retention_s) * 1000),))
        conn.commit()
        return conn

    def start(self) -> None:
        conn = self.prepare()
        self._thread = threading.Thread(target=self._write_loop, args=(conn,), name="ledger-writer", daemon=True)
        self._thread.start()

    def record(self, entry: Entry) -> None:
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything recorded so far is on disk."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(30)
            self._thread = None

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        insert = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        last_purge = time.time()
        while True:
            item = self._queue.get()
            batch: list[Entry] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    conn.executemany(insert, [astuple(e) for e in batch])
                    conn.commit()
                    self.written += len(batch)
                except sqlite3.Error:
                    log.exception("ledger: could not write %d rows", len(batch))
            if time.time() - last_purge > _DAY:
                conn.execute("DELETE FROM requests WHERE ts < ?", (time.time() - self.retention_s,))
                conn.commit()
                last_purge = time.time()
            for w in waiters:
                w.set()
            if stop:
                conn.close()
                return

    def insert_drained(self, rows: list[tuple[str, Entry]]) -> int:
        """Rows from the shared ledger stream (router.state.drain), committed before the drainer acknowledges them.
        Each row's stream id is recorded in the same transaction, so a batch delivered again after a drainer
        crashed between commit and acknowledge is not counted twice. Returns how many rows were new."""
        insert = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        conn = self._connect()
        try:
            with conn:
                new = [
                    astuple(entry)
                    for stream_id, entry in rows
                    if conn.execute(
                        "INSERT OR IGNORE INTO drained (stream_id, ms) VALUES (?, ?)",
                        (stream_id, int(stream_id.partition("-")[0])),
                    ).rowcount
                ]
                conn.executemany(insert, new)
            return len(new)
        finally:
            conn.close()

    # -- reading -------------------------------------------------------------------------------------------------

    def usage(
        self,
        tenant: str | None = None,
        workflow: str | None = None,
        task: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Per-task totals matching the filters."""
        where, args = ["1=1"], []
        for column, value in (("tenant", tenant), ("workflow", workflow), ("task", task)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        sql = (
            "SELECT task, COUNT(*), SUM(tier = 'local'), SUM(tier = 'frontier'), SUM(tier = 'advisor'), "
            "SUM(cache LIKE 'hit%'), SUM(escalated != ''), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(cost_usd), SUM(local_cost_usd), SUM(counterfactual_usd), SUM(saved_usd), "
            "SUM(advisor_frontier_tokens), SUM(advisor_from_scratch_tokens) "
            f"FROM requests WHERE {' AND '.join(where)} GROUP BY task ORDER BY task"
        )
        keys = ("task", *USAGE_METRICS)
        conn = self._connect()
        try:
            return [dict(zip(keys, row, strict=True)) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def recent(self, since: float, limit: int = 50_000) -> list[tuple[Any, ...]]:
        """The newest requests since a time, for the dashboard: (tenant, tier, status, cache, escalated,
        latency_ms, ttft_ms, cost_usd, local_cost_usd, saved_usd, counterfactual_usd), newest first."""
        conn = self._connect()
        try:
            return list(
                conn.execute(
                    "SELECT tenant, tier, status, cache, escalated, latency_ms, ttft_ms, cost_usd, local_cost_usd, "
                    "saved_usd, counterfactual_usd FROM requests WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
                    (since, limit),
                )
            )
        finally:
            conn.close()

    def spent(self, since: float) -> list[tuple[str, str, float, int]]:
        """(tenant, workflow, frontier usd, frontier tokens) since a time: budgets start from this."""
        conn = self._connect()
        try:
            return list(
                conn.execute(
                    "SELECT tenant, workflow, SUM(cost_usd), SUM(frontier_tokens) FROM requests WHERE ts >= ? "
                    "GROUP BY tenant, workflow",
                    (since,),
                )
            )
        finally:
            conn.close()


def _add_new_columns(conn: sqlite3.Connection) -> None:
    """A ledger written by an older version gains the columns added since (with their defaults)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    for f in fields(Entry):
        if f.name not in have:
            default = f.default if isinstance(f.default, int | float) else f"'{f.default}'"
            conn.execute(f"ALTER TABLE requests ADD COLUMN {f.name} {_TYPES[str(f.type)]} DEFAULT {default}")
