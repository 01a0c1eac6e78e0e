"""Rate limits shared through a real Redis: the same token-bucket semantics as in-process, one bucket for all
replicas, and the documented fallback when Redis is down (local buckets, or 503 with limits_on_error: closed)."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
import redis.asyncio as aioredis

from router.accounting.limits import TokenBucket
from router.state.health import StateHealth, StateUnavailable
from router.state.limits import SharedBucket
from tests.support.redis_server import RedisServer


def bucket(url: str, key: str, rate: float, capacity: float, closed: bool = False, timeout_s: float = 5.0):
    client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return SharedBucket(client, StateHealth(url, timeout_s), key, rate, capacity, closed=closed)


async def test_same_semantics_as_in_process(redis_server: RedisServer) -> None:
    key = f"t{uuid.uuid4().hex}"
    shared, local = bucket(redis_server.url, key, 0.5, 3), TokenBucket(0.5, 3)
    # A burst of 4 at a rate of 0.5/s: 3 fit, the 4th waits ~2 s; more than the capacity never fits.
    got = [await shared.atake(1) for _ in range(4)]
    want = [local.take(1) for _ in range(4)]
    assert got[:3] == want[:3] == [0.0, 0.0, 0.0]
    assert got[3] == pytest.approx(want[3], abs=0.05) and 1.9 < got[3] <= 2.0
    assert await shared.atake(4) == math.inf
    assert shared.remaining() == 0 and shared.reset_after() == pytest.approx(6.0, abs=0.1)
    shared.give_back(1)
    await asyncio.sleep(0.05)
    assert await shared.atake(1) == 0.0  # the token given back
    await shared.client.aclose()


async def test_one_bucket_for_all_replicas(redis_server: RedisServer) -> None:
    key = f"t{uuid.uuid4().hex}"
    replicas = [bucket(redis_server.url, key, 0.01, 10) for _ in range(3)]
    waits = await asyncio.gather(*(replicas[i % 3].atake(1) for i in range(30)))
    assert sum(1 for w in waits if w == 0.0) == 10  # 10 in all, not 10 per replica
    for b in replicas:
        await b.client.aclose()


async def test_redis_down_falls_back_to_local_or_refuses() -> None:
    url = "redis://127.0.0.1:1/0"
    local = bucket(url, "k", 0.01, 2, timeout_s=0.2)
    assert [await local.atake(1) for _ in range(3)][:2] == [0.0, 0.0]  # this replica's own bucket
    assert await local.atake(1) > 0
    closed = bucket(url, "k", 0.01, 2, closed=True, timeout_s=0.2)
    with pytest.raises(StateUnavailable):
        await closed.atake(1)
    await local.client.aclose()
    await closed.client.aclose()
