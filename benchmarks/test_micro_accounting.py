"""Micro-benchmark of what one finished request costs the accounting: pricing, the Prometheus updates, and the
whole `finish` (ledger off). It answers one question from issue 17: is batching the metric updates worth it?

    .venv/bin/python -m pytest benchmarks/test_micro_accounting.py --benchmark-columns=min,median,ops
"""

from __future__ import annotations

import time

import pytest

from router.accounting.service import Accounting, Finished
from router.config import Settings
from router.observability import Metrics
from router.outcome import CacheStatus, Outcome
from router.routing.policy import Decision
from router.types import ChatRequest, Chunk, Message, Usage

pytestmark = pytest.mark.benchmark(group="accounting")


async def _nothing():  # type: ignore[no-untyped-def]
    if False:
        yield Chunk()


def _done() -> Finished:
    request = ChatRequest(model="auto", messages=[Message("user", "Classify this ticket: my card was charged twice")])
    decision = Decision("local", "local", "default", "classification", "inferred", 0.1, 12)
    outcome = Outcome("local", decision, Chunk("billing"), _nothing(), cache=CacheStatus("miss"))
    return Finished(request, "chat", "ok", time.monotonic(), outcome, Usage(12, 3), ttft=0.004)


@pytest.fixture(scope="module")
def accounting() -> Accounting:
    settings = Settings.model_validate({"accounting": {"ledger_path": ""}})
    return Accounting(settings, Metrics())


def test_finish(benchmark, accounting: Accounting) -> None:  # type: ignore[no-untyped-def]
    done = _done()
    summary = benchmark(accounting.finish, done)
    assert summary  # the figures for the log line


def test_metric_updates_only(benchmark, accounting: Accounting) -> None:  # type: ignore[no-untyped-def]
    done = _done()
    booked = accounting._book(done)
    benchmark(accounting._count, done, booked)


def test_pricing_only(benchmark, accounting: Accounting) -> None:  # type: ignore[no-untyped-def]
    benchmark(accounting._book, _done())
