"""Learned thresholds: the Clopper-Pearson arithmetic, the bound in simulation and on held-out real pairs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from router.cache.thresholds import GRID, Bound, Thresholds, certified_threshold, upper_bound


def test_clopper_pearson_closed_forms() -> None:
    for n in (10, 100, 1000):
        assert upper_bound(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-9)  # the "rule of three" family
    # k/n = 5 % with n = 1000: above the rate, by about the normal approximation's 1.645 σ
    hi, sigma = upper_bound(50, 1000, 0.05), math.sqrt(0.05 * 0.95 / 1000)
    assert hi - 0.05 == pytest.approx(1.645 * sigma, rel=0.15)


def test_max_wrong_is_the_largest_count_the_upper_bound_allows() -> None:
    bound = Bound.of(0.01, 0.95)
    assert bound.alpha == pytest.approx(0.05 / (2 * len(GRID)))
    assert bound.max_wrong(100) == -1  # 100 clean outcomes cannot show a 1 % rate at this confidence
    for n in (700, 1500, 5000):
        k = bound.max_wrong(n)
        assert k >= 0
        assert upper_bound(k, n, bound.alpha) <= 0.01 < upper_bound(k + 1, n, bound.alpha)


def _simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes whose wrong rate falls with similarity: 40 % at 0.80, 0 at 1.0 (cubic), similarities skewed high."""
    similarity = 1.0 - 0.2 * rng.beta(1.0, 2.5, n)
    wrong = rng.random(n) < 0.4 * ((1.0 - similarity) / 0.2) ** 3
    return similarity, wrong


def _true_rate(tau: float) -> float:
    """The wrong-hit rate of queries at similarity ≥ tau under _simulate (numerically, on a fine grid)."""
    u = np.linspace(0, (1.0 - tau) / 0.2, 20001)  # u = (1 - s) / 0.2 ~ Beta(1, 2.5)
    density = (1 - u) ** 1.5
    return float((0.4 * u**3 * density).sum() / density.sum())


def test_the_bound_holds_in_simulation() -> None:
    """Calibrate on 3,000 outcomes, 200 times: the certified threshold's true wrong-hit rate exceeds δ in at most
    the stated 5 % of runs (Bonferroni makes it far fewer), while a point estimate (observed rate ≤ δ) overshoots
    often. Both must pick thresholds that serve hits, or the comparison says nothing."""
    rng = np.random.default_rng(15)
    delta, bound = 0.01, Bound.of(0.01, 0.95)
    certified_over, naive_over, certified_runs = 0, 0, 0
    for _ in range(200):
        similarity, wrong = _simulate(rng, 3000)
        tau = certified_threshold(similarity, wrong, bound)
        if tau is not None:
            certified_runs += 1
            certified_over += _true_rate(tau) > delta
        naive = next(t for t in (*GRID, 1.0) if t == 1.0 or wrong[similarity >= t].mean() <= delta)
        naive_over += _true_rate(naive) > delta
    assert certified_runs >= 190
    assert certified_over <= 10
    assert naive_over >= 40


def test_entry_floor_own_threshold_and_refuted_static() -> None:
    learned = Thresholds(error_bound=0.01, confidence=0.95, window=5000, entry_window=1000)
    assert learned.threshold("acme", 0.9) == 0.9  # cold start: the static one
    record = learned.record()
    learned.observe("acme", 0.97, False, record)  # this entry was wrong at 0.97
    assert not learned.allows(0.965, 0.9, record) and not learned.allows(0.97, 0.9, record)
    assert learned.allows(0.975, 0.9, record) and learned.allows(0.91, 0.9, None)
    hot = learned.record()
    for _ in range(1500):  # right far below the tenant's threshold: its own outcomes certify 0.86, not lower
        learned.observe("acme", 0.865, True, hot)
    assert hot.observations.certified() == 0.86
    assert learned.allows(0.862, 0.95, hot) and not learned.allows(0.855, 0.95, hot)
    assert not learned.allows(0.965, 0.9, record)  # the floor outranks any certified threshold
    # Another tenant whose outcomes show the static threshold wrong gets no semantic hits at all (from 30 on).
    for i in range(29):
        learned.observe("globex", 0.95, i % 4 != 0, None)  # 25 % wrong
    assert learned.threshold("globex", 0.9) == 0.9
    learned.observe("globex", 0.95, False, None)
    assert learned.threshold("globex", 0.9) > 1.0
    assert learned.threshold("acme", 0.9) == 0.86  # acme's pool certifies from its own outcomes only


DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "paraphrase"


@pytest.mark.skipif(not (DATA / "mqp.npy").exists(), reason="run benchmarks/cache_data.py and cache_pairs.py mqp")
def test_the_bound_holds_on_held_out_real_pairs() -> None:
    """Real MiniLM embeddings of Medical Question Pairs (public, doctor-labelled): calibrate on one half of the
    guarded pairs, serve the other half. δ = 10 %: 1,000 pairs are too few to certify 1 % (that needs ~700
    outcomes above the threshold with none wrong)."""
    sys.path.insert(0, str(DATA.parents[1]))
    from cache_pairs import embedded

    from router.cache.guard import agree, anchors

    pairs = embedded("mqp")
    similarity, right = pairs.cosine, pairs.label.astype(bool)
    guarded = np.array([agree(anchors(a), anchors(b)) for a, b in zip(pairs.a, pairs.b, strict=True)])
    order = np.random.default_rng(0).permutation(len(right))
    tune, held = order[: len(order) // 2], order[len(order) // 2 :]
    tune = tune[guarded[tune]]
    tau = certified_threshold(similarity[tune], ~right[tune], Bound.of(0.10, 0.95))
    assert tau is not None
    hits = held[guarded[held] & (similarity[held] >= tau)]
    assert len(hits) >= 50
    assert (~right[hits]).mean() <= 0.10
