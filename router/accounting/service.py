"""Accounting for one router: budgets reserved before frontier calls, and every finished request settled,
priced, written to the ledger and counted in the metrics."""

from __future__ import annotations

import asyncio
import calendar
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from router.accounting.budgets import BudgetLimit, Budgets, Reservation
from router.accounting.costs import Pricing
from router.accounting.ledger import Entry, Ledger
from router.config import BudgetSettings, Settings
from router.fastpath import estimate_tokens
from router.observability import Metrics
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
    """What the HTTP layer knows when a chat request ends."""

    request: ChatRequest
    endpoint: str
    status: str  # ok | error | cancelled
    started: float  # time.monotonic()
    tier: str = "none"
    model: str = ""
    task: str = ""
    usage: Usage | None = None
    parts: list[str] = field(default_factory=list)  # text sent so far: counts a cancelled stream; never stored
    ttft: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reservation: Reservation | None = None
    frontier_usage: Usage | None = None  # advisor: what the review cost

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


class Accounting:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
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
        request = done.request
        latency = time.monotonic() - done.started
        usage = done.usage
        if usage is None and done.ttft is not None:  # cancelled or failed mid-stream: count what was generated
            prompt = estimate_tokens("\n".join(m.content for m in request.messages))
            usage = Usage(prompt, estimate_tokens("".join(done.parts)))
        elif usage is None:  # refused or failed before any model answered: nothing was served
            usage = Usage()
        cost = local_cost = 0.0
        frontier_tokens = 0
        if done.tier == "frontier":
            cost = self.settle(done.reservation, done.model, usage)
            frontier_tokens = usage.total_tokens
        elif done.frontier_usage is not None:  # advisor review
            reviewer = done.headers.get("x-router-reviewer", "")
            cost = self.settle(done.reservation, reviewer, done.frontier_usage)
            frontier_tokens = done.frontier_usage.total_tokens
        elif done.reservation is not None:
            self.release(done.reservation)
        if done.tier in ("local", "advisor") and not done.headers.get("x-router-cache", "miss").startswith("hit"):
            local_cost = self.pricing.local_usd(done.model, latency)
        # Savings only for answered requests, against what was really served; a refused, failed or cancelled
        # request books what it spent and saves nothing.
        answered = done.status == "ok"
        counterfactual = (
            self.pricing.counterfactual_usd(usage.prompt_tokens, usage.completion_tokens) if answered else 0.0
        )
        saved = counterfactual - cost - local_cost if answered else 0.0
        h = done.headers
        m = self.metrics
        m.requests.labels(done.endpoint, done.tier, done.task or "none", done.status).inc()
        m.duration.labels(done.tier).observe(latency)
        if done.ttft is not None:
            m.ttft.labels(done.tier).observe(done.ttft)
        m.tokens.labels(done.tier, "input").inc(usage.prompt_tokens)
        m.tokens.labels(done.tier, "output").inc(usage.completion_tokens)
        if cost:
            m.cost.labels("frontier", m.tenant(request.tenant)).inc(cost)
        if local_cost:
            m.cost.labels("local", m.tenant(request.tenant)).inc(local_cost)
        if saved > 0:
            m.saved.labels(m.tenant(request.tenant)).inc(saved)
        if h.get("x-router-escalated"):
            m.escalations.labels(h["x-router-escalated"]).inc()
        summary: dict[str, object] = {
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": None if done.ttft is None else round(done.ttft * 1000, 3),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": cost,
            "local_cost_usd": local_cost,
            "saved_usd": saved,
        }
        if self.ledger is not None:
            self.ledger.record(
                Entry(
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
                    frontier_tokens=frontier_tokens,
                    cache=h.get("x-router-cache", ""),
                    escalated=h.get("x-router-escalated", ""),
                    latency_ms=latency * 1000,
                    ttft_ms=(done.ttft or 0.0) * 1000,
                    cost_usd=cost,
                    local_cost_usd=local_cost,
                    counterfactual_usd=counterfactual,
                    saved_usd=saved,
                    advisor_frontier_tokens=int(h.get("x-router-frontier-tokens", 0)),
                    advisor_from_scratch_tokens=int(h.get("x-router-frontier-tokens-from-scratch", 0)),
                    route_score=float(h.get("x-router-score", -1.0)),
                    route_rule=h.get("x-router-rule", ""),
                )
            )
        return summary
