"""What the accounting needs from a budget store, in-process or shared: one protocol, two implementations
(router.state.memory.MemoryBudgets, router.state.budgets.RedisBudgets)."""

from __future__ import annotations

from typing import Protocol

from router.accounting.budgets import Reservation, Scope


class BudgetStore(Protocol):
    def scopes(self, tenant: str, workflow: str | None) -> list[Scope]: ...

    async def reserve(self, scopes: list[Scope], usd: float, tokens: int) -> Reservation | None:
        """Hold usd/tokens in every scope, or nothing if any lacks room (→ None)."""

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        """Release the hold and add the real spend; idempotent; never waits on I/O."""

    async def snapshot(self, scope: Scope) -> dict[str, float]: ...

    def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def status(self) -> dict[str, object]: ...
