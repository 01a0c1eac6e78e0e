"""Arrival processes: rates, burstiness and limits, on seeded (so deterministic) samples."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from router.bench.arrivals import interarrivals, schedule

N = 20_000


def gaps(rate: float, process: str, burstiness: float = 1.0, seed: int = 1) -> list[float]:
    return list(itertools.islice(interarrivals(rate, process, burstiness=burstiness, seed=seed), N))  # type: ignore[arg-type]


def cv(xs: list[float]) -> float:
    return statistics.pstdev(xs) / statistics.fmean(xs)


def test_constant_is_exact() -> None:
    assert schedule(4.0, count=5, process="constant") == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize("rate", [0.5, 5.0, 2000.0])
def test_poisson_mean_and_cv(rate: float) -> None:
    xs = gaps(rate, "poisson")
    # Standard error of the mean of N exponential gaps is (1/rate)/sqrt(N) ≈ 0.7 %; allow ~3 SE.
    assert statistics.fmean(xs) == pytest.approx(1 / rate, rel=0.025)
    assert cv(xs) == pytest.approx(1.0, abs=0.03)


def test_poisson_counts_have_variance_equal_to_mean() -> None:
    offsets = schedule(10.0, duration=2000.0, seed=3)
    counts = [0] * 2000
    for t in offsets:
        counts[int(t)] += 1
    mean, var = statistics.fmean(counts), statistics.pvariance(counts)
    assert mean == pytest.approx(10.0, rel=0.03)
    assert var / mean == pytest.approx(1.0, abs=0.1)  # index of dispersion of a Poisson process


@pytest.mark.parametrize("k", [0.25, 1.0, 4.0])
def test_gamma_keeps_the_rate_and_sets_the_cv(k: float) -> None:
    xs = gaps(8.0, "gamma", burstiness=k)
    assert statistics.fmean(xs) == pytest.approx(1 / 8.0, rel=0.05)
    assert cv(xs) == pytest.approx(1 / math.sqrt(k), rel=0.06)


def test_burstier_means_more_variable() -> None:
    assert cv(gaps(8.0, "gamma", burstiness=0.25)) > cv(gaps(8.0, "poisson")) > cv(gaps(8.0, "gamma", burstiness=4))


def test_seeded_and_reproducible() -> None:
    assert schedule(5.0, count=50, seed=9) == schedule(5.0, count=50, seed=9)
    assert schedule(5.0, count=50, seed=9) != schedule(5.0, count=50, seed=10)


def test_limits_and_warmup() -> None:
    by_count = schedule(100.0, count=30, warmup=1.0, seed=2)
    warm = [t for t in by_count if t < 1.0]
    assert len(by_count) - len(warm) == 30  # the count is of measured requests
    assert 60 < len(warm) < 140  # ~100 warm-up requests at 100/s
    by_time = schedule(100.0, duration=2.0, warmup=1.0, seed=2)
    assert by_time[0] == 0.0 and max(by_time) < 3.0
    both = schedule(100.0, duration=2.0, count=10, seed=2)
    assert len(both) == 10


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        schedule(0.0, count=1)
    with pytest.raises(ValueError):
        schedule(1.0)
    with pytest.raises(ValueError):
        next(interarrivals(1.0, "gamma", burstiness=0))
    with pytest.raises(ValueError):
        next(interarrivals(1.0, "weibull"))  # type: ignore[arg-type]
