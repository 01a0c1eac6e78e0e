"""The budget store the settings ask for: in-process (`state.url: memory`) or one shared Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry

from router.accounting.budgets import BudgetLimit, Budgets, Scope
from router.accounting.limits import TokenBucket
from router.config import ConfigError, StateSettings
from router.state.backend import BudgetStore
from router.state.memory import MemoryBudgets

if TYPE_CHECKING:
    from router.cache.store import ResponseCache


def redis_client(settings: StateSettings) -> Any:  # redis.asyncio.Redis, imported lazily
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ConfigError(
            "state.url is a redis:// URL but the redis client is not installed: pip install redis"
        ) from None
    # Bounded connects and reads: a Redis that is slow or gone fails the call, it never hangs a request.
    return aioredis.from_url(
        settings.url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        retry_on_timeout=False,
        health_check_interval=30,
    )


def budget_store(
    settings: StateSettings, budgets: Budgets, limits: dict[Scope, BudgetLimit], registry: CollectorRegistry
) -> BudgetStore:
    if settings.url == "memory":
        return MemoryBudgets(budgets)
    from router.state.budgets import RedisBudgets
    from router.state.health import StateHealth

    return RedisBudgets(
        redis_client(settings),
        StateHealth(settings.url, settings.timeout_s, registry),
        limits,
        prefix=settings.key_prefix,
        ttl_s=settings.reservation_ttl_s,
        fail_open=settings.budgets_on_error == "open",
    )


def cache_replicator(settings: StateSettings, cache: ResponseCache, registry: CollectorRegistry) -> Any:
    """A started CacheReplicator when replicas share a Redis and the cache is on; else None."""
    if settings.url == "memory" or not cache.settings.enabled:
        return None
    import redis.asyncio as aioredis

    from router.state.cache import CacheReplicator
    from router.state.health import StateHealth

    # The follower blocks on XREAD for up to 1 s: its own connection, with a read timeout above that.
    follower = aioredis.from_url(settings.url, socket_timeout=5.0, socket_connect_timeout=settings.timeout_s)
    health = StateHealth(settings.url, settings.timeout_s, registry)
    replicator = CacheReplicator(cache, redis_client(settings), follower, health, prefix=settings.key_prefix)
    replicator.start()
    return replicator


BucketFactory = Callable[[str, str, float, float], Any]  # (tenant, kind, rate/s, capacity) → a token bucket


def bucket_factory(settings: StateSettings, registry: CollectorRegistry | None) -> tuple[BucketFactory, Any]:
    """How AccessControl makes its rate-limit buckets, and the Redis client to close at shutdown (None)."""
    if settings.url == "memory":
        return (lambda _tenant, _kind, rate, capacity: TokenBucket(rate, capacity)), None
    from router.state.health import StateHealth
    from router.state.limits import SharedBucket

    client = redis_client(settings)
    health = StateHealth(settings.url, settings.timeout_s, registry)
    closed = settings.limits_on_error == "closed"

    def make(tenant: str, kind: str, rate: float, capacity: float) -> SharedBucket:
        key = f"{settings.key_prefix}limit:{orjson.dumps([tenant, kind]).decode()}"
        return SharedBucket(client, health, key, rate, capacity, closed=closed)

    return make, client


def sync_redis_client(settings: StateSettings) -> Any:  # redis.Redis: reads done in worker threads
    import redis

    return redis.Redis.from_url(
        settings.url, socket_timeout=settings.timeout_s * 4, socket_connect_timeout=settings.timeout_s
    )


def ledger_drainer(
    settings: StateSettings, path: str, retention_days: float, registry: CollectorRegistry | None
) -> Any:
    """A LedgerDrainer writing the shared ledger stream into the SQLite file at `path`."""
    import redis.asyncio as aioredis

    from router.accounting.ledger import Ledger
    from router.state.drain import LedgerDrainer
    from router.state.health import StateHealth

    # XREADGROUP blocks up to 1 s: a read timeout above that.
    # A background job: looser bounds than the request path's.
    client = aioredis.from_url(settings.url, socket_timeout=5.0, socket_connect_timeout=2.0)
    health = StateHealth(settings.url, 2.0, registry)
    return LedgerDrainer(client, health, Ledger(path, retention_days), prefix=settings.key_prefix)


def shared_ledger(settings: StateSettings, path: str | None, retention_days: float, registry: CollectorRegistry) -> Any:
    """The SharedLedger of a replica (with the drain role when state.ledger_drain and a ledger path are set)."""
    from router.state.health import StateHealth
    from router.state.ledger import SharedLedger

    drainer = ledger_drainer(settings, path, retention_days, registry) if settings.ledger_drain and path else None
    return SharedLedger(
        redis_client(settings),
        sync_redis_client(settings),
        StateHealth(settings.url, settings.timeout_s, registry),
        prefix=settings.key_prefix,
        maxlen=settings.ledger_maxlen,
        buffer=settings.ledger_buffer,
        retention_days=retention_days,
        registry=registry,
        drainer=drainer,
    )
