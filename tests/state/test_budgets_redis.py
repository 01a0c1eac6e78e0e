"""Shared budgets on a real redis-server: atomic reserve/settle, no overshoot across replicas, holds of a dead
replica expire, Redis down or stalled answers within the timeout with the documented policy."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from router.accounting.budgets import BudgetLimit
from router.state.budgets import RedisBudgets, SharedReservation
from router.state.health import StateHealth, StateUnavailable
from tests.support.redis_server import RedisServer

TENANT = ("tenant", "acme")
WORKFLOW = ("workflow", "acme", "nightly")


def replica(url: str, limits, prefix: str, ttl_s: float = 30.0, fail_open: bool = False, timeout_s: float = 0.5):
    client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return RedisBudgets(client, StateHealth(url, timeout_s), limits, prefix=prefix, ttl_s=ttl_s, fail_open=fail_open)


@pytest.fixture()
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"  # each test its own keys


async def test_reserve_settle_release(redis_server: RedisServer, prefix: str) -> None:
    b = replica(redis_server.url, {TENANT: BudgetLimit(tokens_per_day=1000, usd_per_day=1.0)}, prefix)
    r = await b.reserve([TENANT], 0.25, 600)
    assert isinstance(r, SharedReservation)
    assert await b.reserve([TENANT], 0.25, 600) is None  # 600 + 600 > 1000 tokens
    snap = await b.snapshot(TENANT)
    assert (snap["reserved_tokens"], snap["reserved_usd"], snap["reservations"]) == (600, 0.25, 1)
    b.settle(r, 0.1, 300)
    b.settle(r, 0.1, 300)  # idempotent
    await b.aclose()
    b = replica(redis_server.url, {TENANT: BudgetLimit(tokens_per_day=1000, usd_per_day=1.0)}, prefix)
    snap = await b.snapshot(TENANT)
    assert snap["tokens_day"] == snap["tokens_month"] == 300
    assert snap["usd_day"] == pytest.approx(0.1)
    assert (snap["reserved_tokens"], snap["reservations"]) == (0, 0)
    r2 = await b.reserve([TENANT], 0.0, 700)  # exactly the 700 left
    assert r2 is not None
    b.settle(r2, 0.0, 0)  # released: nothing spent
    await b.aclose()


async def test_all_or_nothing_across_scopes(redis_server: RedisServer, prefix: str) -> None:
    limits = {TENANT: BudgetLimit(tokens_per_day=10_000), WORKFLOW: BudgetLimit(tokens_per_day=100)}
    b = replica(redis_server.url, limits, prefix)
    assert await b.reserve([TENANT, WORKFLOW], 0.0, 150) is None
    assert (await b.snapshot(TENANT))["reserved_tokens"] == 0  # the tenant scope was not held either
    await b.aclose()


async def test_concurrent_replicas_never_overshoot(redis_server: RedisServer, prefix: str) -> None:
    limits = {TENANT: BudgetLimit(tokens_per_day=5_000)}
    replicas = [replica(redis_server.url, limits, prefix, timeout_s=10) for _ in range(3)]  # atomicity, not speed

    async def one(i: int) -> int:
        b = replicas[i % 3]
        r = await b.reserve([TENANT], 0.0, 100)
        if r is None:
            return 0
        await asyncio.sleep(0.001 * (i % 5))
        b.settle(r, 0.0, 90 + i % 11)  # spends a little less than it held
        return 1

    admitted = sum(await asyncio.gather(*(one(i) for i in range(200))))
    for b in replicas:
        await b.aclose()
    b = replica(redis_server.url, limits, prefix)
    snap = await b.snapshot(TENANT)
    await b.aclose()
    assert 45 <= admitted < 200  # ~50 fit at a time of 100; more as spending settles below the holds
    assert snap["tokens_day"] <= 5_000
    assert (snap["reserved_tokens"], snap["reservations"]) == (0, 0)


async def test_dead_replicas_hold_expires_live_one_is_heartbeated(redis_server: RedisServer, prefix: str) -> None:
    limits = {TENANT: BudgetLimit(tokens_per_day=1_000)}
    dead = replica(redis_server.url, limits, prefix, ttl_s=0.3)
    live = replica(redis_server.url, limits, prefix, ttl_s=0.3)
    live.start()  # heartbeats every 0.1 s
    assert await dead.reserve([TENANT], 0.0, 500) is not None  # never settled, never heartbeated: "crashed"
    held = await live.reserve([TENANT], 0.0, 500)
    assert held is not None
    assert await live.reserve([TENANT], 0.0, 1) is None  # full
    await asyncio.sleep(0.6)  # > ttl: the dead hold is gone, the heartbeated one is not
    snap = await live.snapshot(TENANT)
    assert (snap["reserved_tokens"], snap["reservations"]) == (500, 1)
    live.settle(held, 0.0, 0)
    await live.aclose()
    await dead.client.aclose()
    check = replica(redis_server.url, limits, prefix)
    assert (await check.snapshot(TENANT))["reserved_tokens"] == 0  # whole again
    assert await check.reserve([TENANT], 0.0, 1_000) is not None
    await check.aclose()


async def test_redis_down_fails_closed_or_open_within_timeout() -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens there
    limits = {TENANT: BudgetLimit(tokens_per_day=1_000)}
    closed = replica(url, limits, "x:", timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(StateUnavailable):
        await closed.reserve([TENANT], 0.0, 10)
    assert closed.status()["up"] is False and closed.status()["budgets_on_error"] == "closed"
    opened = replica(url, limits, "x:", timeout_s=0.2, fail_open=True)
    r = await opened.reserve([TENANT], 0.0, 10)
    assert r is not None and r.scopes == []
    opened.settle(r, 0.0, 10)  # nothing held, nothing to send
    assert time.monotonic() - started < 5  # bounded, not a hang (the bound itself is 2 x 0.2 s)
    await closed.aclose()
    await opened.aclose()


async def test_stalled_redis_is_bounded_by_the_timeout(redis_server: RedisServer, prefix: str) -> None:
    b = replica(redis_server.url, {TENANT: BudgetLimit(tokens_per_day=1_000)}, prefix, timeout_s=0.2)
    assert await b.reserve([TENANT], 0.0, 1) is not None  # connected
    redis_server.pause()
    try:
        with pytest.raises(StateUnavailable):
            await asyncio.wait_for(b.reserve([TENANT], 0.0, 1), 5)
    finally:
        redis_server.resume()
    assert await b.reserve([TENANT], 0.0, 1) is not None  # back
    assert b.status()["up"] is True
    await b.aclose()
