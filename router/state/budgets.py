"""Budgets shared by every replica through one Redis: reserve on admit, settle on finish, release on cancel.

Each scope (a tenant, or a tenant's workflow) has, in Redis:

    …:spend:<day> / …:spend:<month>   hashes {usd, tok}: what was really spent (usd in integer nano-dollars, so
                                      adding and removing holds never drifts)
    …:held                            a sorted set: reservation id → the server time (ms) it expires
    …:holds                           a hash: reservation id → "usd tok", plus the running totals _usd and _tok

Every check-and-change is one Lua script, atomic on the Redis server, so N replicas admitting at once can never
overshoot a limit: a request is admitted only if, in every scope, spent + held + its own worst case fits. Each
script first drops the holds whose time has passed; a replica heartbeats its live holds every ttl/3, so a hold
outlives its request only when the replica died — then it expires within `state.reservation_ttl_s` and the
budget is whole again. Settling is idempotent (a `done` marker per reservation), so a retried settle never
counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from router.accounting.budgets import BudgetLimit, Reservation, Scope
from router.state.health import StateHealth, StateUnavailable

log = logging.getLogger(__name__)

NANO = 1_000_000_000
DAY_TTL_S = 3 * 86400  # spend keys outlive their period a little, then Redis drops them
MONTH_TTL_S = 40 * 86400
DONE_TTL_S = 3600  # a settle is retried for seconds, not hours: the once-only marker need not outlive that

# Drops the expired holds of one scope (z: the sorted set, h: the hash) and fixes the running totals.
_PURGE = """
local function int(x) return string.format('%d', x) end  -- never '1.5e+10' to HINCRBY
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function purge(z, h)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(gone) do
    local v = redis.call('HGET', h, id)
    if v then
      local u, k = string.match(v, '(%S+) (%S+)')
      redis.call('HINCRBY', h, '_usd', int(-tonumber(u)))
      redis.call('HINCRBY', h, '_tok', int(-tonumber(k)))
      redis.call('HDEL', h, id)
    end
    redis.call('ZREM', z, id)
  end
end
local function num(key, field) return tonumber(redis.call('HGET', key, field) or '0') end
"""

# KEYS: 4 per scope (day, month, held, holds). ARGV: id, usd, tok, ttl_ms, then 4 limits per scope ('' = none).
# Returns {1} when held in every scope, else {0, scope index, limit index}: nothing is held then.
RESERVE = (
    _PURGE
    + """
local id, usd, tok, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 4
for i = 0, n - 1 do
  local d, m, z, h = KEYS[4*i+1], KEYS[4*i+2], KEYS[4*i+3], KEYS[4*i+4]
  purge(z, h)
  local hu, ht = num(h, '_usd'), num(h, '_tok')
  local used = {num(d, 'usd') + hu + usd, num(m, 'usd') + hu + usd, num(d, 'tok') + ht + tok, num(m, 'tok') + ht + tok}
  for j = 1, 4 do
    local lim = ARGV[4 + 4*i + j]
    if lim ~= '' and used[j] > tonumber(lim) then return {0, i, j} end
  end
end
for i = 0, n - 1 do
  local z, h = KEYS[4*i+3], KEYS[4*i+4]
  redis.call('ZADD', z, int(now + ttl), id)
  redis.call('HSET', h, id, ARGV[2] .. ' ' .. ARGV[3])
  redis.call('HINCRBY', h, '_usd', int(usd))
  redis.call('HINCRBY', h, '_tok', int(tok))
end
return {1}
"""
)

# KEYS: 4 per scope, then the done marker. ARGV: id, usd spent, tok spent, day ttl s, month ttl s, marker ttl s.
# Releases the hold (if it has not expired) and adds the real spend, once.
SETTLE = (
    _PURGE
    + """
local id, usd, tok = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', ARGV[6]) == false then return 0 end
local n = (#KEYS - 1) / 4
for i = 0, n - 1 do
  local d, m, z, h = KEYS[4*i+1], KEYS[4*i+2], KEYS[4*i+3], KEYS[4*i+4]
  local v = redis.call('HGET', h, id)
  if v then
    local u, k = string.match(v, '(%S+) (%S+)')
    redis.call('HINCRBY', h, '_usd', int(-tonumber(u)))
    redis.call('HINCRBY', h, '_tok', int(-tonumber(k)))
    redis.call('HDEL', h, id)
  end
  redis.call('ZREM', z, id)
  purge(z, h)
  if usd ~= 0 or tok ~= 0 then
    redis.call('HINCRBY', d, 'usd', int(usd)); redis.call('HINCRBY', d, 'tok', int(tok))
    redis.call('HINCRBY', m, 'usd', int(usd)); redis.call('HINCRBY', m, 'tok', int(tok))
    redis.call('EXPIRE', d, ARGV[4]); redis.call('EXPIRE', m, ARGV[5])
  end
end
return 1
"""
)

# KEYS[1]: a scope's held set. ARGV: ttl_ms, then ids: pushes their expiry out (only those still held).
HEARTBEAT = (
    _PURGE
    + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', int(now + ttl), ARGV[i]) end
return 1
"""
)

# KEYS: day, month, held, holds of one scope → {usd_day, usd_month, tok_day, tok_month, held usd, held tok, holds}
SNAPSHOT = (
    _PURGE
    + """
purge(KEYS[3], KEYS[4])
return {num(KEYS[1], 'usd'), num(KEYS[2], 'usd'), num(KEYS[1], 'tok'), num(KEYS[2], 'tok'),
        num(KEYS[4], '_usd'), num(KEYS[4], '_tok'), redis.call('ZCARD', KEYS[3])}
"""
)


@dataclass(slots=True)
class SharedReservation(Reservation):
    id: str = ""
    keys: tuple[str, ...] = ()


def _nanos_up(usd: float) -> int:
    return math.ceil(usd * NANO - 1e-6)


def _limit_args(limit: BudgetLimit) -> list[str]:
    def arg(value: float | int | None, scale: int) -> str:
        return "" if value is None else str(math.floor(value * scale + 1e-6))

    return [
        arg(limit.usd_per_day, NANO),
        arg(limit.usd_per_month, NANO),
        arg(limit.tokens_per_day, 1),
        arg(limit.tokens_per_month, 1),
    ]


class RedisBudgets:
    """The shared counterpart of router.accounting.budgets.Budgets (same limits, same all-or-nothing rule)."""

    def __init__(
        self,
        client: Any,
        health: StateHealth,
        limits: dict[Scope, BudgetLimit],
        *,
        prefix: str,
        ttl_s: float,
        fail_open: bool = False,
        clock: Any = time.time,
    ) -> None:
        self.client, self.health, self.limits, self.prefix = client, health, limits, prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.fail_open = fail_open
        self.clock = clock
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._snapshot = client.register_script(SNAPSHOT)
        self.live: dict[str, SharedReservation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Task[None] | None = None
        self.unsettled = 0  # settlements given up on after retries (each logged): spend that was not counted

    # -- keys ----------------------------------------------------------------------------------------------------

    def _scope_keys(self, scope: Scope) -> list[str]:
        t = time.gmtime(self.clock())
        base = f"{self.prefix}budget:{orjson.dumps(list(scope)).decode()}"
        day, month = time.strftime("%Y-%m-%d", t), time.strftime("%Y-%m", t)
        return [f"{base}:spend:{day}", f"{base}:spend:{month}", f"{base}:held", f"{base}:holds"]

    def scopes(self, tenant: str, workflow: str | None) -> list[Scope]:
        found: list[Scope] = [("tenant", tenant)]
        if workflow:
            found.append(("workflow", tenant, workflow))
        return [s for s in found if s in self.limits]

    # -- reserve / settle ----------------------------------------------------------------------------------------

    async def reserve(self, scopes: list[Scope], usd: float, tokens: int) -> Reservation | None:
        """Hold the worst case in every scope, or nothing (→ None). Redis unreachable: StateUnavailable (fail
        closed, the default) or, with `budgets_on_error: open`, an untracked reservation that admits the call."""
        rid = uuid.uuid4().hex
        keys: list[str] = []
        args: list[Any] = [rid, _nanos_up(usd), int(tokens), self.ttl_ms]
        for scope in scopes:
            keys += self._scope_keys(scope)
            args += _limit_args(self.limits[scope])
        try:
            answer = await self.health.call("budget_reserve", self._reserve(keys=keys, args=args))
        except StateUnavailable:
            if self.fail_open:
                return Reservation([], usd, tokens)  # admitted unaccounted: nothing to release
            raise
        if int(answer[0]) != 1:
            return None
        reservation = SharedReservation(list(scopes), usd, tokens, id=rid, keys=tuple(keys))
        self.live[rid] = reservation
        return reservation

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        """Release the hold and add the real spend, in the background (the end of a request never waits on
        Redis). Idempotent, here and on the server."""
        if reservation.settled:
            return
        reservation.settled = True
        if not isinstance(reservation, SharedReservation):
            return  # admitted while Redis was down (fail open): nothing was held
        task = asyncio.get_running_loop().create_task(self._settle_retrying(reservation, usd, tokens))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_retrying(self, reservation: SharedReservation, usd: float, tokens: int) -> None:
        args = [reservation.id, round(usd * NANO), int(tokens), DAY_TTL_S, MONTH_TTL_S, DONE_TTL_S]
        keys = [*reservation.keys, f"{self.prefix}budget:done:{reservation.id}"]
        try:
            for attempt in range(5):
                try:
                    await self.health.call("budget_settle", self._settle(keys=keys, args=args))
                    return
                except StateUnavailable:
                    await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            # The hold expires by itself; what was spent is not counted. Said loudly: this is an undercount.
            self.unsettled += 1
            log.error("budget settlement of %s given up after retries: %.6f USD not counted", reservation.id, usd)
        finally:
            self.live.pop(reservation.id, None)

    # -- heartbeat -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat_forever())

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            with contextlib.suppress(StateUnavailable):
                await self.heartbeat()

    async def heartbeat(self) -> None:
        """Push out the expiry of every hold this replica still has open."""
        by_set: dict[str, list[str]] = {}
        for r in list(self.live.values()):
            if not r.settled:
                for i in range(2, len(r.keys), 4):
                    by_set.setdefault(r.keys[i], []).append(r.id)
        for key, ids in by_set.items():
            await self.health.call("budget_heartbeat", self._heartbeat(keys=[key], args=[self.ttl_ms, *ids]))

    async def aclose(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()

    # -- reading -------------------------------------------------------------------------------------------------

    async def snapshot(self, scope: Scope) -> dict[str, float]:
        if scope not in self.limits:
            return {}
        raw = await self.health.call("budget_snapshot", self._snapshot(keys=self._scope_keys(scope)))
        d_usd, m_usd, d_tok, m_tok, h_usd, h_tok, holds = (int(x) for x in raw)
        return {
            "usd_day": d_usd / NANO,
            "usd_month": m_usd / NANO,
            "tokens_day": d_tok,
            "tokens_month": m_tok,
            "reserved_usd": h_usd / NANO,
            "reserved_tokens": h_tok,
            "reservations": holds,
        }

    def status(self) -> dict[str, object]:
        return {**self.health.status(), "budgets_on_error": "open" if self.fail_open else "closed"}
