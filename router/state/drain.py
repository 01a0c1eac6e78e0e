"""The drainer: the shared ledger stream (router.state.ledger) into the SQL ledger, durably.

One consumer group ("drain") reads the stream. A batch is committed to SQLite and only then acknowledged, so a
drainer that dies mid-batch leaves its rows pending in the group; the next drainer takes them over with
XAUTOCLAIM once they have been idle `claim_idle_s`. A batch committed but not yet acknowledged when the drainer
died is delivered again, and the SQL ledger skips rows whose stream id it already has (Ledger.insert_drained), so
every row lands exactly once.

One drainer at a time writes the SQL file: `hybrid-router ledger-drain`, or a replica with `state.ledger_drain:
true`; either way it first takes a lock in Redis (renewed while it drains, expiring if it dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from router.accounting.ledger import Entry, Ledger
from router.state.health import StateHealth, StateUnavailable
from router.state.ledger import decode, stream_key

log = logging.getLogger(__name__)

GROUP = "drain"
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
Batch = list[tuple[str, Entry]]


class LedgerDrainer:
    def __init__(
        self,
        client: Any,
        health: StateHealth,
        sql: Ledger,
        *,
        prefix: str,
        batch: int = 500,
        claim_idle_s: float = 30.0,
        lock_ttl_s: float = 10.0,
    ) -> None:
        self.client, self.health, self.sql = client, health, sql
        self.stream, self.lock = stream_key(prefix), f"{prefix}ledger:drainer"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch, self.claim_idle_ms, self.lock_ttl_ms = batch, int(claim_idle_s * 1000), int(lock_ttl_s * 1000)
        self.written = self.delivered = 0
        self._prepared = False
        self._skipped: list[bytes] = []  # ids with nothing to write (trimmed, unreadable): acknowledged with the batch

    async def _call(self, op: str, awaitable: Any) -> Any:
        return await self.health.call(op, awaitable)

    async def take_lock(self) -> bool:
        """Hold (or renew) the one-drainer lock; False while another drainer holds it."""
        renewed = await self._call(
            "drain_lock", self.client.eval(_RENEW, 1, self.lock, self.consumer, self.lock_ttl_ms)
        )
        if renewed:
            return True
        got = await self._call("drain_lock", self.client.set(self.lock, self.consumer, nx=True, px=self.lock_ttl_ms))
        return bool(got)

    async def ensure_group(self) -> None:
        """The SQL schema and the consumer group, once."""
        if self._prepared:
            return
        await asyncio.to_thread(lambda: self.sql.prepare().close())
        try:
            async with asyncio.timeout(self.health.timeout_s):
                await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):  # "the group exists" is fine; anything else is Redis not answering
                self.health.errors.labels("drain_group").inc()
                raise StateUnavailable("the shared ledger (Redis) is unavailable") from None
        self._prepared = True

    async def next_batch(self, block_ms: int = 1000) -> Batch:
        """Rows a dead drainer left pending (idle past claim_idle_s) first, else new rows (waiting up to block_ms)."""
        claimed = await self._call(
            "drain_claim",
            self.client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch),
        )
        messages = claimed[1] if claimed else []
        if not messages:
            got = await self._call(
                "drain_read",
                self.client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch, block=block_ms),
            )
            messages = [m for _stream, ms in got or () for m in ms]
        rows: Batch = []
        for message_id, fields in messages:
            if not fields:  # trimmed away (MAXLEN) before it was drained: nothing left to write
                self._skipped.append(message_id)
                continue
            try:
                rows.append((message_id.decode(), decode(fields[b"row"])))
            except (KeyError, TypeError, ValueError) as exc:  # never a poison row that stalls the drain
                log.warning("ledger drain: row %s skipped: %s", message_id.decode(), exc)
                self._skipped.append(message_id)
        self.delivered += len(rows)
        return rows

    async def commit(self, rows: Batch) -> int:
        new = await asyncio.to_thread(self.sql.insert_drained, rows) if rows else 0
        self.written += new
        return new

    async def ack(self, rows: Batch) -> None:
        ids = [i for i, _ in rows] + self._skipped
        if ids:
            await self._call("drain_ack", self.client.xack(self.stream, GROUP, *ids))
        self._skipped = []

    async def drain_once(self, block_ms: int = 1000) -> int:
        """One batch: read, commit, then acknowledge. Returns the rows read."""
        await self.ensure_group()
        rows = await self.next_batch(block_ms)
        await self.commit(rows)
        await self.ack(rows)
        return len(rows)

    async def drain_all(self) -> int:
        """Until the stream has nothing new or pending (the CLI's --once, benchmarks)."""
        total = 0
        while n := await self.drain_once(block_ms=100):
            total += n
        return total

    async def run_forever(self) -> None:
        """Drain while holding the lock; Redis down or another drainer holding it: wait and try again."""
        while True:
            try:
                if not await self.take_lock():
                    await asyncio.sleep(self.lock_ttl_ms / 3000)
                    continue
                await self.drain_once()
            except asyncio.CancelledError:
                raise
            except StateUnavailable:
                await asyncio.sleep(1.0)
            except Exception:  # a bad SQL file or row: log it, keep the rows pending, try again later
                log.exception("ledger drain failed; the rows stay pending in Redis")
                await asyncio.sleep(5.0)

    async def release_lock(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.eval(_RENEW, 1, self.lock, self.consumer, 1)

    async def aclose(self) -> None:
        await self.release_lock()
        with contextlib.suppress(Exception):
            await self.client.aclose()
