"""The response cache shared by replicas: every entry a replica stores is appended to one Redis stream, and every
replica follows that stream into its own cache — the exact table and its local hnswlib index alike. So a prompt
answered on replica A is a hit on replica B once the entry has arrived (a few milliseconds), and lookups never
wait on Redis: they stay in-process. Why a stream and local indexes rather than a Redis vector index: Redis'
vector search is a module (RediSearch / Redis Stack), not in every Redis; a local index answers in
microseconds with no network hop; and the stream doubles as the warm start of a new replica (it replays the
backlog, up to `cache.max_entries`).

Best effort, fail open: Redis down means each replica keeps caching on its own; publishes are dropped (counted),
the follower retries and resumes where it was. Not shared: dropping an entry through feedback (that replica
only), hit statistics and learned thresholds (per replica). The stream holds prompts and answers, as the cache
itself does: secure that Redis (password, TLS) like the cache's snapshot directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import numpy as np
import orjson

from router.cache.entry import entry_record
from router.cache.store import Entry, ResponseCache, entry_from_record
from router.state.health import StateHealth, StateUnavailable

log = logging.getLogger(__name__)


def encode(entry: Entry, vector: np.ndarray | None) -> dict[str, bytes]:
    record = entry_record(entry)
    vec = b"" if vector is None else np.asarray(vector, dtype="<f4").tobytes()
    return {"rec": orjson.dumps(record), "vec": vec}


def decode(fields: dict[bytes, bytes]) -> tuple[Entry, np.ndarray | None]:
    key, model, text, finish, p_tokens, c_tokens, calls, created, expires, ns_key, prompt = orjson.loads(fields[b"rec"])
    entry = entry_from_record(key, model, text, finish, p_tokens, c_tokens, calls, created, expires, ns_key, prompt)
    raw = fields.get(b"vec", b"")
    return entry, (np.frombuffer(raw, dtype="<f4").copy() if raw else None)


class CacheReplicator:
    def __init__(self, cache: ResponseCache, client: Any, follower: Any, health: StateHealth, *, prefix: str) -> None:
        self.cache, self.client, self.follower, self.health = cache, client, follower, health
        self.stream = f"{prefix}cache:entries"
        self.origin = uuid.uuid4().hex.encode()  # this replica: its own entries are not absorbed twice
        self.maxlen = max(1, cache.settings.max_entries)
        self.published = self.absorbed = self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._follow: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.cache.replicator = self
        self._follow = asyncio.get_running_loop().create_task(self._follow_forever(), name="cache-replication")

    def publish(self, entry: Entry, vector: np.ndarray | None) -> None:
        fields = {"origin": self.origin, **encode(entry, vector)}
        task = asyncio.get_running_loop().create_task(self._publish(fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, fields: dict[str, bytes]) -> None:
        try:
            xadd = self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            await self.health.call("cache_publish", xadd)
            self.published += 1
        except StateUnavailable:
            self.dropped += 1  # fail open: this replica still has it; the others miss it

    async def _follow_forever(self) -> None:
        while not self.cache.ready:  # noqa: ASYNC110 - the cache has a ready flag, not an event
            await asyncio.sleep(0.05)
        last = b"0-0"  # the backlog first: a new replica starts warm
        backoff = 0.1
        while True:
            try:
                got = await self.follower.xread({self.stream: last}, count=256, block=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or restarting: keep the local cache, try again
                self.health.errors.labels("cache_follow").inc()
                log.debug("cache replication: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            for _stream, messages in got or ():
                for message_id, fields in messages:
                    last = message_id
                    if fields.get(b"origin") == self.origin:
                        continue
                    try:
                        entry, vector = decode(fields)
                    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                        log.warning("cache replication: a bad entry skipped: %s", exc)
                        continue
                    self.absorbed += self.cache.absorb(entry, vector)

    async def aclose(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            await asyncio.gather(self._follow, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for c in (self.client, self.follower):
            with contextlib.suppress(Exception):
                await c.aclose()
