"""Scorer micro-benchmarks: compiled vs pure-Python twin on the same prompts, plus the whole routing decision.

    pytest benchmarks/test_scorer_bench.py --benchmark-group-by=group --benchmark-columns=median,mean,stddev,rounds

The ratio figures (compiled vs twin, linear scaling to 1 MB) are printed by benchmarks/scorer_figures.py.
"""

from __future__ import annotations

import pytest

from router import _fastpath_py as twin
from router.config import Settings
from router.http.openai import parse_chat_request
from router.routing.policy import RoutingPolicy
from router.routing.scoring import Weights

compiled = pytest.importorskip("router._fastpath")

W = (Weights.default().bias, *Weights.default().weights)

BASE = (
    "You are a support assistant. Classify the customer's message into billing, shipping or technical, "
    "then extract the order number if any. Message: 'Hi, my order #A-1234 arrived damaged and the app "
    "crashes with an exception when I open the refund page. Why? Please explain the steps to fix it.'\n"
    "```python\ndef refund(order):\n    return api.post('/refund', order)\n```\n1. check order\n2. refund\n"
)


def prompt(size: int) -> str:
    return (BASE * (size // len(BASE) + 1))[:size]


SIZES = {"200B": 200, "2KB": 2048, "64KB": 65536}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["compiled", "twin"])
def test_scorer(benchmark, impl: str, size: str) -> None:
    benchmark.group = f"scorer {size}"
    scorer = (compiled if impl == "compiled" else twin).Scorer(W)
    text = prompt(SIZES[size])
    result = benchmark(scorer.score, text)
    assert result == compiled.Scorer(W).score(text)


def test_routing_decision_2kb(benchmark) -> None:
    benchmark.group = "decision 2KB"
    policy = RoutingPolicy(Settings(), frontier_models=("frontier-model",))
    request = parse_chat_request(
        {
            "model": "auto",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt(2048)}],
        }
    )
    decision = benchmark(policy.decide, request)
    assert decision.tier in ("local", "frontier")
