"""State shared by router replicas: `state.url: memory` keeps it in-process (one replica, today's behaviour);
`state.url: redis://host:port/db` shares it through one Redis (docs/scale-out.md).

    backend.py   the BudgetStore protocol; memory.py the in-process store, budgets.py the Redis one
    budgets.py   reservations and settlement by atomic Lua scripts, heartbeated so a crashed replica's holds
                 expire and the budget is whole again
    limits.py    token buckets in Redis (the same semantics as router.accounting.limits.TokenBucket)
    cache.py     response-cache entries replicated through a Redis stream into every replica's own index
    health.py    bounded calls, the state metrics, StateUnavailable (each feature's fail-open/closed policy)
    connect.py   builds each piece from the settings
"""
