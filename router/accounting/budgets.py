"""Frontier budgets per tenant and per workflow: reserve before, settle after, never overshoot.

A request bound for the frontier reserves its worst case (prompt estimate plus max_tokens, priced) in every scope
it belongs to; it is admitted only if, in each scope, spent + reserved + its reservation stays within the limit.
When it ends — finished, failed or cancelled — the reservation is released and the real cost is added. The event
loop is single-threaded, so reserve-check-commit needs no lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

Scope = tuple[str, ...]  # ("tenant", name) or ("workflow", tenant, workflow)


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    usd_per_day: float | None = None
    usd_per_month: float | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None


@dataclass
class _State:
    limit: BudgetLimit
    day: str = ""
    month: str = ""
    usd_day: float = 0.0
    usd_month: float = 0.0
    tokens_day: int = 0
    tokens_month: int = 0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0

    def roll(self, day: str, month: str) -> None:
        if day != self.day:
            self.day, self.usd_day, self.tokens_day = day, 0.0, 0
        if month != self.month:
            self.month, self.usd_month, self.tokens_month = month, 0.0, 0

    def fits(self, usd: float, tokens: int) -> bool:
        lim = self.limit
        checks = (
            (lim.usd_per_day, self.usd_day + self.reserved_usd + usd),
            (lim.usd_per_month, self.usd_month + self.reserved_usd + usd),
            (lim.tokens_per_day, self.tokens_day + self.reserved_tokens + tokens),
            (lim.tokens_per_month, self.tokens_month + self.reserved_tokens + tokens),
        )
        return all(limit is None or used <= limit + 1e-12 for limit, used in checks)


@dataclass(slots=True)
class Reservation:
    scopes: list[Scope]
    usd: float
    tokens: int
    settled: bool = False


@dataclass
class Budgets:
    limits: dict[Scope, BudgetLimit]
    clock: object = field(default=time.time, repr=False)
    _states: dict[Scope, _State] = field(default_factory=dict)

    def _periods(self) -> tuple[str, str]:
        t = time.gmtime(self.clock())  # type: ignore[operator]
        return time.strftime("%Y-%m-%d", t), time.strftime("%Y-%m", t)

    def _state(self, scope: Scope) -> _State | None:
        limit = self.limits.get(scope)
        if limit is None:
            return None
        state = self._states.get(scope)
        if state is None:
            state = self._states[scope] = _State(limit)
        day, month = self._periods()
        state.roll(day, month)
        return state

    def scopes(self, tenant: str, workflow: str | None) -> list[Scope]:
        found: list[Scope] = [("tenant", tenant)]
        if workflow:
            found.append(("workflow", tenant, workflow))
        return [s for s in found if s in self.limits]

    def reserve(self, scopes: list[Scope], usd: float, tokens: int) -> Reservation | None:
        """Hold `usd`/`tokens` in every scope, or nothing at all if any scope lacks room (→ None)."""
        states = [self._state(s) for s in scopes]
        if not all(st is None or st.fits(usd, tokens) for st in states):
            return None
        for st in states:
            if st is not None:
                st.reserved_usd += usd
                st.reserved_tokens += tokens
        return Reservation(scopes, usd, tokens)

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        """Release the hold and add what was really spent. Idempotent."""
        if reservation.settled:
            return
        reservation.settled = True
        for scope in reservation.scopes:
            st = self._state(scope)
            if st is None:
                continue
            st.reserved_usd -= reservation.usd
            st.reserved_tokens -= reservation.tokens
            st.usd_day += usd
            st.usd_month += usd
            st.tokens_day += tokens
            st.tokens_month += tokens

    def preload(self, scope: Scope, usd_day: float, usd_month: float, tokens_day: int, tokens_month: int) -> None:
        """Spending already recorded this day/month (from the ledger, at start-up)."""
        st = self._state(scope)
        if st is not None:
            st.usd_day, st.usd_month, st.tokens_day, st.tokens_month = usd_day, usd_month, tokens_day, tokens_month

    def snapshot(self, scope: Scope) -> dict[str, float]:
        st = self._state(scope)
        if st is None:
            return {}
        return {
            "usd_day": st.usd_day,
            "usd_month": st.usd_month,
            "tokens_day": st.tokens_day,
            "tokens_month": st.tokens_month,
            "reserved_usd": st.reserved_usd,
            "reserved_tokens": st.reserved_tokens,
        }
