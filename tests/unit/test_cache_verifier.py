"""The pair verifier (router/cache/verifier.py): its certified threshold, the shipped model file, the held-out bound.

No model is loaded here except the shipped verifier's own weights (a small .npz); the cache with the verifier and
the real embedding model is tested in test_cache_verifier_lookup.py."""

from __future__ import annotations

import numpy as np
import pytest

from router.cache.guard import anchors, hard_agree
from router.cache.thresholds import binomial_cdf, upper_bound
from router.cache.verifier import DEFAULT_MODEL, EXTRA, SCORE_GRID, Verifier, certified_score, features, load_verifier


def _simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores skewed high, wrong with probability 0.3 · (1 - score)^0.7 (falls to 0 at score 1)."""
    scores = 1.0 - rng.beta(0.6, 3.0, n)
    wrong = rng.random(n) < 0.3 * (1.0 - scores) ** 0.7
    return scores, wrong


def _true_rate(t: float) -> float:
    """The wrong rate above t under _simulate (Monte Carlo on a large sample, fixed for all runs)."""
    scores = _LARGE[0]
    above = scores >= t
    return float((0.3 * (1.0 - scores[above]) ** 0.7).mean()) if above.any() else 0.0


_LARGE = _simulate(np.random.default_rng(0), 400_000)


def test_the_certified_threshold_holds_in_simulation() -> None:
    """Calibrate on 1,500 pairs, 120 times: the certified threshold's true wrong rate exceeds δ in at most about
    the stated 5 % of runs; a point estimate (the lowest grid score whose observed rate is ≤ δ) overshoots far more
    often, so the test can tell a valid procedure from an invalid one."""
    rng = np.random.default_rng(15)
    delta = 0.05
    over, naive_over, served = 0, 0, 0
    for _ in range(120):
        scores, wrong = _simulate(rng, 1500)
        t = certified_score(scores, wrong, delta, 0.95)
        if t is not None:
            served += 1
            over += _true_rate(t) > delta
        naive = min((g for g in SCORE_GRID if (scores >= g).any() and wrong[scores >= g].mean() <= delta), default=1)
        naive_over += _true_rate(naive) > delta
    assert served >= 100  # it does certify thresholds that serve hits
    assert over <= 12  # ≤ 5 % expected (120 · 0.05 = 6), with room for chance
    assert naive_over >= 30


def test_certified_score_is_the_fixed_sequence_answer() -> None:
    scores = np.linspace(0.5, 1.0, 2000)
    wrong = np.zeros(2000, dtype=bool)
    wrong[:200] = True  # every wrong pair scores below 0.55
    t = certified_score(scores, wrong, 0.01, 0.95)
    assert t is not None and 0.54 < t < 0.56  # down to where the wrong pairs begin (a few are allowed at 1 %)
    # Every threshold in the sequence down to t certifies: its upper bound is at most δ.
    for g in SCORE_GRID:
        if g < t:
            break
        n, k = int((scores >= g).sum()), int(wrong[scores >= g].sum())
        if binomial_cdf(int(0.01 * n / 2), n, 0.01) <= 0.05:  # else passed over, not a test
            assert upper_bound(k, n, 0.05) <= 0.01 + 1e-6
    assert certified_score(scores, np.ones(2000, dtype=bool), 0.01, 0.95) is None
    assert certified_score(scores[:100], wrong[:100], 0.01, 0.95) is None  # too few pairs to say anything


def test_the_shipped_model_loads_small_and_scores_in_numpy() -> None:
    assert DEFAULT_MODEL.stat().st_size <= 3_000_000
    v = Verifier.load()
    assert v.dim == 384 and v.w1.shape == (2 * 384 + len(EXTRA), v.b1.shape[0])
    assert len(v.calibration_scores) >= 2000 and v.calibration_wrong.any()
    rng = np.random.default_rng(1)
    u = rng.normal(size=384).astype(np.float32)
    u /= np.linalg.norm(u)
    a = anchors("What is the capital of France?")
    b = anchors("Which city is the capital of France?")
    s = v.score(u, u, a, b)
    assert 0.0 <= s <= 1.0
    # The same pair, features either way round: the score is symmetric (every feature is).
    w = rng.normal(size=384).astype(np.float32)
    w /= np.linalg.norm(w)
    assert v.score(u, w, a, b) == pytest.approx(v.score(w, u, b, a), abs=1e-6)
    assert features(u, w, a, b).shape == (2 * 384 + len(EXTRA),)
    # A looser bound never needs a higher score.
    thresholds = [v.threshold(bound, 0.95) for bound in (0.01, 0.05, 0.10, 0.20)]
    known = [t for t in thresholds if t is not None]
    assert known == sorted(known, reverse=True) and thresholds[-1] is not None


def test_the_bound_holds_on_held_out_calibration_halves() -> None:
    """The shipped calibration split (real public pairs, never used to fit the weights), halved 40 times: the
    threshold certified on one half at δ keeps the other half's wrong-hit rate at most δ in nearly every split
    (a wrong procedure, or a model whose scores do not rank, fails this)."""
    v = Verifier.load()
    rng = np.random.default_rng(15)
    n = len(v.calibration_scores)
    for delta in (0.20, 0.30):
        over, certified = 0, 0
        for _ in range(40):
            order = rng.permutation(n)
            a, b = order[: n // 2], order[n // 2 :]
            t = certified_score(v.calibration_scores[a], v.calibration_wrong[a], delta, 0.95)
            if t is None:
                continue
            certified += 1
            took = v.calibration_scores[b] >= t
            over += took.any() and v.calibration_wrong[b][took].mean() > delta
        assert certified >= 35, delta
        assert over <= 6, (delta, over)  # the held-out half's rate is a noisy estimate itself: a few may exceed


def test_a_missing_or_foreign_model_turns_the_verifier_off(tmp_path) -> None:
    assert load_verifier("off", None, 384) is None
    assert load_verifier("auto", str(tmp_path / "missing.npz"), 384) is None
    assert load_verifier("auto", None, 768) is None  # another embedding model's vectors
    bad = tmp_path / "bad.npz"
    np.savez(bad, feature_version=np.int64(99))
    assert load_verifier("auto", str(bad), 384) is None
    assert load_verifier("auto", None, 384) is not None


def test_hard_checks_are_the_guard_minus_the_soft_ones() -> None:
    same = ("What is the capital of France?", "Which city is the capital of France?")
    assert hard_agree(anchors(same[0]), anchors(same[1]))
    for a, b in (
        ("What is 17 times 23?", "What is 17 times 24?"),
        ("Is it safe to swim here?", "Is it not safe to swim here?"),
        ("Summarise this in 3 bullets", "Summarise this in 5 bullets"),
        ("Flights from London to Paris", "Flights from Paris to London"),
        ("What is the capital of France?", "What is the capital of Spain?"),
    ):
        assert not hard_agree(anchors(a), anchors(b)), (a, b)
