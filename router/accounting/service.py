"""Accounting for one router: budgets reserved before frontier calls, and every finished request settled,
priced, written to the ledger and counted in the metrics."""

from __future__ import annotations

import asyncio
import calendar
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.accounting.budgets import BudgetLimit, Budgets, Reservation
from router.accounting.costs import Pricing
from router.accounting.ledger import Entry, Ledger
from router.config import BudgetSettings, Settings
from router.fastpath import estimate_tokens
from router.observability import Metrics
from router.outcome import Outcome
from router.state.backend import BudgetStore
from router.state.connect import budget_store, shared_ledger
from router.state.ledger import SharedLedger
from router.types import ChatRequest, Chunk, Usage


class BudgetExhausted(Exception):
    pass


def _limit(b: BudgetSettings) -> BudgetLimit:
    return BudgetLimit(b.usd_per_day, b.usd_per_month, b.tokens_per_day, b.tokens_per_month)


def ledger_path(settings: Settings) -> str | None:
    path = settings.accounting.ledger_path
    if path == "":
        return None
    if path is None:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = str(Path(base) / "hybrid-router" / "ledger.sqlite3")
    return path


@dataclass(slots=True)
class Finished:
    """What the HTTP layer knows when a chat request ends: the pipeline's outcome (None when it never got one:
    refused, invalid, failed before any model answered) and what was sent."""

    request: ChatRequest
    endpoint: str
    status: str  # ok | error | cancelled
    started: float  # time.monotonic()
    outcome: Outcome | None = None
    usage: Usage | None = None
    parts: list[str] = field(default_factory=list)  # text sent so far: counts a cancelled stream; never stored
    ttft: float | None = None

    @property
    def tier(self) -> str:
        return self.outcome.decision.tier if self.outcome is not None else "none"

    @property
    def model(self) -> str:
        return self.outcome.model if self.outcome is not None else ""

    @property
    def task(self) -> str:
        return self.outcome.decision.task if self.outcome is not None else ""

    def note(self, chunk: Chunk) -> None:
        """Called for every chunk sent: first-token time, text so far, usage, completion."""
        if self.ttft is None and (chunk.text or chunk.tool_call is not None):
            self.ttft = time.monotonic() - self.started
        if chunk.text:
            self.parts.append(chunk.text)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason is not None:
            self.status = "ok" if chunk.finish_reason not in ("error", "cancelled") else chunk.finish_reason


@dataclass(slots=True)
class Booked:
    """What one finished request cost, and saved against the counterfactual."""

    usage: Usage
    latency: float
    cost: float = 0.0  # frontier USD
    local_cost: float = 0.0
    frontier_tokens: int = 0
    counterfactual: float = 0.0
    saved: float = 0.0

    def summary(self, ttft: float | None) -> dict[str, object]:
        return {
            "latency_ms": round(self.latency * 1000, 3),
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cost_usd": self.cost,
            "local_cost_usd": self.local_cost,
            "saved_usd": self.saved,
        }


@dataclass(slots=True)
class _Series:
    requests: Any
    duration: Any
    ttft: Any
    tokens_in: Any
    tokens_out: Any
    cost_frontier: Any
    cost_local: Any
    saved: Any


class Accounting:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._series_cache: dict[tuple[str, ...], _Series] = {}
        self.pricing = Pricing(settings)
        limits: dict[tuple[str, ...], BudgetLimit] = {}
        for tenant in settings.tenants:
            if any(v is not None for v in vars(tenant.budget).values()):
                limits[("tenant", tenant.name)] = _limit(tenant.budget)
            for workflow, budget in tenant.workflows.items():
                limits[("workflow", tenant.name, workflow)] = _limit(budget)
        self.budgets = Budgets(limits)  # in-process; with `state.url: redis://…` the shared store replaces it
        self.store: BudgetStore = budget_store(settings.state, self.budgets, limits, metrics.registry)
        self.shared = settings.state.url != "memory"
        path = ledger_path(settings)
        self.ledger: Ledger | SharedLedger | None = None  # shared: every replica's rows, through Redis
        if path and self.shared:
            self.ledger = shared_ledger(settings.state, path, settings.accounting.retention_days, metrics.registry)
        elif path:
            self.ledger = Ledger(path, settings.accounting.retention_days)

    async def start(self) -> None:
        self.store.start()
        if isinstance(self.ledger, SharedLedger):
            await self.ledger.astart()
        if not isinstance(self.ledger, Ledger):
            return
        await asyncio.to_thread(self.ledger.start)
        # Budgets start from what the ledger says was already spent this day and month.
        now = time.gmtime()
        month_start = calendar.timegm((now.tm_year, now.tm_mon, 1, 0, 0, 0))
        day_start = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0))
        month = await asyncio.to_thread(self.ledger.spent, month_start)
        day = {(t, w): (usd, tok) for t, w, usd, tok in await asyncio.to_thread(self.ledger.spent, day_start)}
        totals: dict[tuple[str, ...], list[float]] = {}
        for tenant, workflow, usd, tokens in month:
            d_usd, d_tok = day.get((tenant, workflow), (0.0, 0))
            for scope in (("tenant", tenant), ("workflow", tenant, workflow)):
                acc = totals.setdefault(scope, [0.0, 0.0, 0, 0])
                acc[0] += d_usd or 0.0
                acc[1] += usd or 0.0
                acc[2] += d_tok or 0
                acc[3] += tokens or 0
        if self.shared:
            return  # the shared store holds every replica's spend; a per-replica ledger knows only its own
        for scope, (d_usd, m_usd, d_tok, m_tok) in totals.items():
            self.budgets.preload(scope, d_usd, m_usd, int(d_tok), int(m_tok))

    async def aclose(self) -> None:
        await self.store.aclose()
        if isinstance(self.ledger, SharedLedger):
            await self.ledger.aclose()
        elif self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)

    # -- budgets -------------------------------------------------------------------------------------------------

    async def reserve(self, request: ChatRequest, model: str) -> Reservation | None:
        """Hold the worst case of a frontier call; None when no budget applies; BudgetExhausted when one is spent;
        StateUnavailable (503) when the shared store is down and budgets fail closed."""
        scopes = self.store.scopes(request.tenant, request.workflow)
        if not scopes:
            return None
        usd, tokens = self.pricing.worst_case(request, model)
        reservation = await self.store.reserve(scopes, usd, tokens)
        if reservation is None:
            raise BudgetExhausted(f"the frontier budget of {' / '.join(s[-1] for s in scopes)} is spent")
        return reservation

    def settle(self, reservation: Reservation | None, model: str, usage: Usage) -> float:
        cost = self.pricing.frontier_usd(model, usage.prompt_tokens, usage.completion_tokens)
        if reservation is not None:
            self.store.settle(reservation, cost, usage.total_tokens)
        return cost

    def release(self, reservation: Reservation | None) -> None:
        """A reserved call that generated nothing (failed to start, cancelled before a token)."""
        if reservation is not None:
            self.store.settle(reservation, 0.0, 0)

    # -- the end of a request ------------------------------------------------------------------------------------

    def finish(self, done: Finished) -> dict[str, object]:
        """Settle, price, count and record one finished request; returns the figures for its log line."""
        booked = self._book(done)
        self._count(done, booked)
        if self.ledger is not None:
            self.ledger.record(self._entry(done, booked))
        return booked.summary(done.ttft)

    def _book(self, done: Finished) -> Booked:
        outcome = done.outcome
        usage = done.usage
        if usage is None and done.ttft is not None:  # cancelled or failed mid-stream: count what was generated
            usage = Usage(done.request.prompt_tokens, estimate_tokens("".join(done.parts)))
        elif usage is None:  # refused or failed before any model answered: nothing was served
            usage = Usage()
        booked = Booked(usage, time.monotonic() - done.started)
        review = outcome.advisor if outcome is not None else None
        if done.tier == "frontier":
            booked.cost = self.settle(outcome.reservation if outcome else None, done.model, usage)
            booked.frontier_tokens = usage.total_tokens
        elif outcome is not None and outcome.frontier_usage is not None:  # advisor review
            reviewer = review.reviewer if review is not None else ""
            booked.cost = self.settle(outcome.reservation, reviewer, outcome.frontier_usage)
            booked.frontier_tokens = outcome.frontier_usage.total_tokens
        elif outcome is not None and outcome.reservation is not None:
            self.release(outcome.reservation)
        cache_hit = outcome is not None and outcome.cache is not None and outcome.cache.hit
        if done.tier in ("local", "advisor") and not cache_hit:
            booked.local_cost = self.pricing.local_usd(done.model, booked.latency)
        # Savings only for answered requests, against what was really served; a refused, failed or cancelled
        # request books what it spent and saves nothing.
        if done.status == "ok":
            booked.counterfactual = self.pricing.counterfactual_usd(usage.prompt_tokens, usage.completion_tokens)
            booked.saved = booked.counterfactual - booked.cost - booked.local_cost
        return booked

    def _count(self, done: Finished, booked: Booked) -> None:
        c = self._series(done)
        c.requests.inc()
        c.duration.observe(booked.latency)
        if done.ttft is not None:
            c.ttft.observe(done.ttft)
        c.tokens_in.inc(booked.usage.prompt_tokens)
        c.tokens_out.inc(booked.usage.completion_tokens)
        if booked.cost:
            c.cost_frontier.inc(booked.cost)
        if booked.local_cost:
            c.cost_local.inc(booked.local_cost)
        if booked.saved > 0:
            c.saved.inc(booked.saved)
        if done.outcome is not None and done.outcome.escalated:
            self.metrics.escalations.labels(done.outcome.escalated).inc()

    def _series(self, done: Finished) -> _Series:
        """The metric series one request updates, looked up once per label combination (prometheus_client's
        `labels()` hashes, locks and allocates on every call)."""
        key = (done.endpoint, done.tier, done.task or "none", done.status, done.request.tenant)
        series = self._series_cache.get(key)
        if series is None:
            m = self.metrics
            tenant = m.tenant(done.request.tenant)
            series = _Series(
                m.requests.labels(key[0], key[1], key[2], key[3]),
                m.duration.labels(key[1]),
                m.ttft.labels(key[1]),
                m.tokens.labels(key[1], "input"),
                m.tokens.labels(key[1], "output"),
                m.cost.labels("frontier", tenant),
                m.cost.labels("local", tenant),
                m.saved.labels(tenant),
            )
            if len(self._series_cache) < 4096:  # bounded: tenants and tasks are few, but names come from config
                self._series_cache[key] = series
        return series

    def _entry(self, done: Finished, booked: Booked) -> Entry:
        request, outcome, usage = done.request, done.outcome, booked.usage
        decision = outcome.decision if outcome is not None else None
        review = outcome.advisor if outcome is not None else None
        return Entry(
            id=request.request_id,
            ts=time.time(),
            tenant=request.tenant,
            workflow=request.workflow or "",
            task=done.task,
            tier=done.tier,
            model=done.model,
            api=request.api,
            status=done.status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            frontier_tokens=booked.frontier_tokens,
            cache=outcome.cache.status if outcome is not None and outcome.cache is not None else "",
            escalated=(outcome.escalated or "") if outcome is not None else "",
            latency_ms=booked.latency * 1000,
            ttft_ms=(done.ttft or 0.0) * 1000,
            cost_usd=booked.cost,
            local_cost_usd=booked.local_cost,
            counterfactual_usd=booked.counterfactual,
            saved_usd=booked.saved,
            advisor_frontier_tokens=review.frontier_tokens if review is not None else 0,
            advisor_from_scratch_tokens=review.from_scratch_tokens if review is not None else 0,
            route_score=decision.score if decision is not None else -1.0,
            route_rule=decision.rule if decision is not None else "",
        )
