"""The in-process budget store (the default, one replica): router.accounting.budgets.Budgets behind the
BudgetStore protocol. The event loop is single-threaded, so its reserve-check-commit needs no lock."""

from __future__ import annotations

from router.accounting.budgets import Budgets, Reservation, Scope


class MemoryBudgets:
    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets

    def scopes(self, tenant: str, workflow: str | None) -> list[Scope]:
        return self.budgets.scopes(tenant, workflow)

    async def reserve(self, scopes: list[Scope], usd: float, tokens: int) -> Reservation | None:
        return self.budgets.reserve(scopes, usd, tokens)

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        self.budgets.settle(reservation, usd, tokens)

    async def snapshot(self, scope: Scope) -> dict[str, float]:
        return self.budgets.snapshot(scope)

    def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"backend": "memory", "up": True}
