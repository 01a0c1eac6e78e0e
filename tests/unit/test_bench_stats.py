"""The benchmark harness's statistics on synthetic records with known answers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from router.bench.prices import DEFAULT_PRICES, Price, request_cost
from router.bench.report import cost_of
from router.bench.stats import SLO, Dist, RequestRecord, goodput, percentile, summarise
from router.bench.workload import WorkloadError, load


def rec(
    i: int,
    *,
    start: float = 0.0,
    ttft: float | None = 0.1,
    e2e: float = 1.0,
    tokens: int = 11,
    error: str | None = None,
    **kw: object,
) -> RequestRecord:
    r = RequestRecord(index=i, item_id=str(i), scheduled=start, sent=start, end=start + e2e, **kw)  # type: ignore[arg-type]
    if ttft is not None:
        r.first_token = start + ttft
        # evenly spaced chunks from the first token to the end
        step = (e2e - ttft) / max(1, tokens - 1)
        r.chunk_times = [start + ttft + k * step for k in range(tokens)]
    r.completion_tokens = tokens
    r.prompt_tokens = 100
    r.usage_reported = True
    r.error = error
    return r


class TestPercentile:
    def test_known_values(self) -> None:
        xs = list(range(1, 101))  # 1..100
        assert percentile(xs, 0) == 1
        assert percentile(xs, 100) == 100
        assert percentile(xs, 50) == pytest.approx(50.5)
        assert percentile(xs, 90) == pytest.approx(90.1)
        assert percentile(xs, 99) == pytest.approx(99.01)

    def test_unsorted_input_and_single_value(self) -> None:
        assert percentile([3.0, 1.0, 2.0], 50) == 2.0
        assert percentile([7.0], 99) == 7.0

    def test_empty_is_nan_and_range_checked(self) -> None:
        assert math.isnan(percentile([], 50))
        with pytest.raises(ValueError):
            percentile([1.0], 101)

    @pytest.mark.parametrize("q", [1, 25, 50, 90, 99, 99.9])
    def test_matches_numpy_linear(self, q: float) -> None:
        rng = random.Random(7)
        xs = [rng.lognormvariate(0, 1) for _ in range(1001)]
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)

    def test_dist(self) -> None:
        d = Dist.of([4.0, 1.0, 3.0, 2.0])
        assert (d.n, d.mean, d.min, d.max, d.p50) == (4, 2.5, 1.0, 4.0, 2.5)
        assert Dist.of([]).n == 0
        assert Dist.of([]).to_json()["p50"] is None


class TestPerRequestMetrics:
    def test_ttft_e2e_and_lag_count_from_the_scheduled_time(self) -> None:
        r = RequestRecord(index=0, item_id="x", scheduled=10.0, sent=10.25, first_token=10.5, end=12.0)
        assert r.send_lag == pytest.approx(0.25)
        assert r.ttft == pytest.approx(0.5)
        assert r.e2e == pytest.approx(2.0)

    def test_tpot_excludes_the_first_token(self) -> None:
        r = rec(0, ttft=0.2, e2e=1.2, tokens=11)
        assert r.tpot == pytest.approx(0.1)  # (1.2 - 0.2) / (11 - 1)
        assert rec(1, tokens=1).tpot is None

    def test_itl_is_the_gaps_between_chunks(self) -> None:
        r = RequestRecord(index=0, item_id="x", scheduled=0.0, chunk_times=[1.0, 1.5, 1.75, 3.0])
        assert r.itls() == pytest.approx([0.5, 0.25, 1.25])


class TestGoodput:
    def test_counts_only_requests_meeting_every_slo(self) -> None:
        records = [
            rec(0, start=0.0, ttft=0.1, e2e=1.0),  # good
            rec(1, start=1.0, ttft=0.6, e2e=1.0),  # TTFT too slow
            rec(2, start=2.0, ttft=0.1, e2e=3.0),  # E2E too slow
            rec(3, start=3.0, ttft=0.1, e2e=1.0, error="http_500"),  # failed
            rec(4, start=4.0, ttft=0.1, e2e=1.0),  # good; window ends at 5.0
        ]
        rps, frac = goodput(records, SLO(ttft=0.5, e2e=2.0))
        assert frac == pytest.approx(2 / 5)
        assert rps == pytest.approx(2 / 5.0)

    def test_tpot_slo(self) -> None:
        fast = rec(0, ttft=0.1, e2e=1.1, tokens=11)  # TPOT 0.1
        slow = rec(1, ttft=0.1, e2e=2.1, tokens=11)  # TPOT 0.2
        one_token = rec(2, ttft=0.1, e2e=0.1, tokens=1)  # no TPOT: cannot violate it
        slo = SLO(tpot=0.15)
        assert [slo.met(r) for r in (fast, slow, one_token)] == [True, False, True]

    def test_no_slo_means_no_goodput(self) -> None:
        s = summarise([rec(0)], SLO())
        assert s.goodput_rps is None and s.goodput_fraction is None


class TestSummary:
    def test_throughput_errors_and_router_headers(self) -> None:
        records = [
            rec(0, start=0.0, e2e=1.0, tier="local", cache="miss", expected_tier="local"),
            rec(1, start=1.0, e2e=1.0, tier="local", cache="hit-exact", expected_tier="frontier"),
            rec(2, start=2.0, e2e=1.0, tier="frontier", cache="miss", escalated=True, expected_tier="frontier"),
            rec(3, start=3.0, e2e=1.0, tier="local", cache="bypass"),
            rec(4, start=0.5, e2e=1.0, error="timeout"),
            rec(5, start=-5.0, e2e=1.0, warmup=True, tier="local"),  # excluded everywhere
        ]
        s = summarise(records)
        assert (s.requests, s.ok) == (5, 4)
        assert s.errors == {"timeout": 1}
        assert s.duration_s == pytest.approx(4.0)  # first scheduled 0.0 → last end 4.0
        assert s.request_throughput == pytest.approx(4 / 4.0)
        assert s.output_token_throughput == pytest.approx(4 * 11 / 4.0)
        assert s.total_token_throughput == pytest.approx(4 * 111 / 4.0)
        assert s.tier_mix == {"local": 3, "frontier": 1}
        assert s.cache_hit_rate == pytest.approx(1 / 3)  # bypass is not a lookup
        assert s.escalations == 1
        assert s.tier_accuracy == pytest.approx(2 / 3)
        assert s.e2e.n == 4 and s.itl.n == 4 * 10

    def test_json_has_no_nan(self) -> None:
        s = summarise([rec(0, ttft=None, tokens=0)])
        js = s.to_json()
        assert js["ttft"]["p50"] is None and js["cache_hit_rate"] is None


class TestCost:
    def test_local_is_free_frontier_is_priced(self) -> None:
        table = dict(DEFAULT_PRICES)
        table["x"] = Price(2.0, 8.0)
        assert request_cost("local", None, None, 1000, 1000, table, "gpt-5") == 0.0
        assert request_cost("frontier", "x", None, 1_000_000, 500_000, table, "gpt-5") == pytest.approx(2.0 + 4.0)
        assert request_cost("frontier", "unknown", None, 1_000_000, 0, table, "gpt-5") == pytest.approx(1.25)
        assert request_cost("frontier", None, 0.5, 1, 1, table, "gpt-5") == 0.5  # the server's own figure wins
        assert request_cost(None, None, None, 1_000_000, 0, table, "gpt-5", assume_tier="frontier") == 1.25

    def test_saving_vs_all_frontier(self) -> None:
        records = [rec(0, tier="local", tokens=100), rec(1, tier="frontier", tokens=100)]
        for r in records:
            r.prompt_tokens = 1000
        c = cost_of(records, dict(DEFAULT_PRICES), "gpt-5", "local")
        per_request = (1000 * 1.25 + 100 * 10.0) / 1e6
        assert c["actual_usd"] == pytest.approx(per_request)
        assert c["all_frontier_usd"]["gpt-5"] == pytest.approx(2 * per_request)
        assert c["saving_vs_reference"] == pytest.approx(0.5)


class TestWorkload:
    def test_native_jsonl(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        f = tmp_path / "w.jsonl"
        f.write_text(
            '{"id": "a", "prompt": "hi", "task": "classification", "expected_tier": "local", "max_tokens": 8}\n'
            "\n"
            '{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}\n'
        )
        a, b = load(f)
        assert (a.id, a.messages, a.task, a.expected_tier, a.max_tokens) == (
            "a",
            [{"role": "user", "content": "hi"}],
            "classification",
            "local",
            8,
        )
        assert b.id == "2" and len(b.messages) == 2 and b.max_tokens is None

    def test_sharegpt(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        f = tmp_path / "s.json"
        f.write_text(
            '[{"id": "c1", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "'
            + "x" * 40
            + '"}, {"from": "human", "value": "q2"}]},'
            ' {"id": "c2", "conversations": [{"from": "gpt", "value": "no question"}]}]'
        )
        (item,) = load(f)  # c2 has no human turn: skipped
        assert item.messages == [{"role": "user", "content": "q1"}]
        assert item.max_tokens == 10

    def test_bad_line_names_the_line(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        f = tmp_path / "bad.jsonl"
        f.write_text('{"prompt": "ok"}\n{nope\n')
        with pytest.raises(WorkloadError, match=":2:"):
            load(f)

    def test_shipped_hybrid_workload(self) -> None:
        items = load("benchmarks/workloads/hybrid_mix.jsonl")
        tiers = {i.expected_tier for i in items}
        tasks = {i.task for i in items}
        assert tiers == {"local", "frontier"}
        assert {"classification", "extraction", "summary", "similarity", "planning", "synthesis", "code"} <= tasks
