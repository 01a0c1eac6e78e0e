"""State shared by router replicas: `state.url: memory` keeps it in-process (one replica, today's behaviour);
`state.url: redis://host:port/db` puts budget reservations and spend in one Redis that every replica uses.

    health.py    the connection's health, bounded calls, the state metrics and the fail-open/closed policy
    budgets.py   budget reservations and settlement with atomic Lua scripts, heartbeated so a crashed
                 replica's holds expire and the budget is whole again
    connect.py   builds the backend from the settings
"""
