"""Token buckets shared by replicas: the same semantics as router.accounting.limits.TokenBucket (refill at `rate`
per second up to `capacity`, take all or nothing, the wait until `amount` fits, inf when it never can), kept in
one Redis hash per bucket and changed by one atomic script on the server's clock — so a tenant's 10 requests/s
are 10 requests/s across all replicas, not 10 per replica.

Redis down or slow (`state.limits_on_error`): `local` (the default) falls back to this replica's own bucket, so
limits still hold per replica (at most N times the limit across N replicas) and nobody gets an error for a
missing Redis; `closed` refuses with 503 state_unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from router.accounting.limits import TokenBucket
from router.state.health import StateHealth, StateUnavailable

# KEYS[1]: the bucket. ARGV: rate/s, capacity, amount, key ttl s, give_back (1: add `amount` instead of taking).
# Returns {wait s ('-1' = never fits), level} as strings (Redis would truncate Lua numbers to integers).
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, cap, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or ARGV[2])
local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp') or now)
level = math.min(cap, level + math.max(0, now - stamp) * rate)
local wait = 0
if ARGV[5] == '1' then
  level = math.min(cap, level + amount)
elseif amount > cap then
  wait = -1
elseif level >= amount then
  level = level - amount
else
  wait = (amount - level) / rate
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {tostring(wait), tostring(level)}
"""


class SharedBucket:
    def __init__(
        self, client: Any, health: StateHealth, key: str, rate: float, capacity: float, *, closed: bool = False
    ) -> None:
        self.client, self.health, self.key = client, health, key
        self.rate, self.capacity, self.closed = rate, capacity, closed
        self.local = TokenBucket(rate, capacity)  # while Redis is down (limits_on_error: local)
        self.level = capacity  # as of the last answer, for the x-ratelimit-* headers
        self._script = client.register_script(TAKE)
        self._ttl = int(capacity / rate * 2 + 60) if rate > 0 else 86400
        self._tasks: set[asyncio.Task[None]] = set()

    async def _run(self, amount: float, give_back: bool) -> float:
        args = [repr(float(self.rate)), repr(float(self.capacity)), repr(float(amount)), self._ttl, int(give_back)]
        wait, level = await self.health.call("limit_take", self._script(keys=[self.key], args=args))
        self.level = float(level)
        wait = float(wait)
        return math.inf if wait < 0 else wait

    async def atake(self, amount: float = 1.0) -> float:
        """0.0 if taken; else the seconds until `amount` would be available (inf if it never fits)."""
        try:
            return await self._run(amount, give_back=False)
        except StateUnavailable:
            if self.closed:
                raise
            wait = self.local.take(amount)
            self.level = self.local.level
            return wait

    def give_back(self, amount: float) -> None:
        self.local.give_back(amount)
        task = asyncio.get_running_loop().create_task(self._give_back(amount))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _give_back(self, amount: float) -> None:
        with contextlib.suppress(StateUnavailable):  # Redis down: the tokens come back by refill anyway
            await self._run(amount, give_back=True)

    def remaining(self) -> int:
        return int(self.level)

    def reset_after(self) -> float:
        return (self.capacity - self.level) / self.rate if self.rate > 0 else 0.0
