"""Prints the scorer figures issue #3 asks for, compiled vs twin in the same run:
p50 per prompt size, the speed-up, the whole routing decision on 2 KB, and scaling up to 1 MB (linear time).

    python benchmarks/scorer_figures.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from router import _fastpath as compiled
from router import _fastpath_py as twin
from router.config import Settings
from router.http.openai import parse_chat_request
from router.routing.policy import RoutingPolicy
from router.routing.scoring import Weights

W = (Weights.default().bias, *Weights.default().weights)
with open(__file__.replace("scorer_figures.py", "test_scorer_bench.py")) as _fh:
    BASE = _fh.read()  # mixed prose and code


def prompt(size: int) -> str:
    return (BASE * (size // len(BASE) + 1))[:size]


def p50(fn: Callable[[], object], budget_s: float = 0.3, inner: int = 1) -> float:
    """Median seconds per call over repeated timed batches."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    fast, slow = compiled.Scorer(W), twin.Scorer(W)
    print(f"{'prompt':>8} {'compiled p50':>14} {'twin p50':>12} {'speed-up':>9}")
    for name, size in (("200 B", 200), ("2 KB", 2048), ("64 KB", 65536)):
        text = prompt(size)
        inner = max(1, 200_000 // size)
        c = p50(lambda t=text: fast.score(t), inner=inner)
        p = p50(lambda t=text: slow.score(t), inner=max(1, inner // 100))
        print(f"{name:>8} {c * 1e6:11.2f} µs {p * 1e6:9.1f} µs {p / c:8.0f}x")
    policy = RoutingPolicy(Settings(), frontier_models=("frontier-model",))
    request = parse_chat_request(
        {
            "model": "auto",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt(2048)}],
        }
    )
    decide = p50(lambda: policy.decide(request), inner=200)
    print(f"whole routing decision (features + rules), 2 KB: p50 {decide * 1e6:.2f} µs")
    print("scaling (compiled):")
    base = None
    for size in (65536, 262144, 1 << 20):
        text = prompt(size)
        t = p50(lambda t=text: fast.score(t), inner=3)
        per_kb = t / (size / 1024)
        base = base or per_kb
        print(f"  {size // 1024:>5} KB: {t * 1e3:7.3f} ms  ({per_kb * 1e9:6.1f} ns/KB, x{per_kb / base:.2f} of 64 KB)")


if __name__ == "__main__":
    main()
