"""Learned similarity thresholds with a stated bound on the wrong-hit rate (in the spirit of vCache).

Every verified outcome is an observation (similarity of the query to the cached entry, was the cached answer right
for it?). Observations come from `POST /v1/cache/feedback` (http/cache_feedback.py), from misses that had a near
candidate (the fresh answer is compared with the candidate's: an answer that repeats it counts as right, any other
as wrong, which only ever errs towards refusing), and from a sampled share of would-be hits that are answered
fresh instead (`explore_rate`) and compared the same way. Exact repeats (hit-exact, similarity 1) are not
outcomes: they would pile up clean observations at the top of the grid that say nothing about rewordings; a
wrong exact hit reported by feedback drops the entry instead. Outcomes live in memory (not in snapshots).

The statement, for an operator bound δ (`error_bound`) and confidence 1-α (`confidence`): a threshold τ from the
grid (GRID) is *certified* when it has MIN_BAND observations just above it and the one-sided Clopper-Pearson upper
bound, at confidence 1-α/(2·|GRID|), on the wrong rate of the observations at similarity ≥ τ is at most δ. The
Bonferroni split over the grid and over the two families (the tenant's pool and the entry's own) makes the chance
that any certified τ has a true wrong-hit rate above δ at most α, for queries drawn like the observed ones
(exchangeable traffic; a shifting workload breaks it, and then the window of recent observations is what adapts).
The reuse rule for a query at similarity s to an entry:

1. never at or below the entry's floor: the highest similarity at which that entry was shown wrong;
2. at or above the entry's own certified threshold, when its own observations certify one (hot entries);
3. else at or above the tenant's certified threshold (all its entries' observations, a sliding window);
4. else the static threshold (cold start: `similarity_threshold`, tuned on public question pairs by
   benchmarks/cache_quality.py),
   while the tenant's outcomes at or above it (once there are MIN_REFUTE) show a wrong rate of at most δ; above
   δ, no semantic hits until a threshold is certified. The cold start carries no guarantee: it is a tuned default
   that the first outcomes can only switch off, never loosen.

The test "CP upper bound ≤ δ" is computed without inverting a beta function: it holds exactly when
P(Binomial(n, δ) ≤ k) ≤ α' for k wrong of n observations; `max_wrong(n)` caches the largest such k.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# Thresholds a pool may certify: coarse enough that the Bonferroni split costs little (20 points: an observation
# count about twice what a single test needs), fine enough to follow the data.
GRID = tuple(round(0.80 + 0.01 * i, 2) for i in range(20))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) ≤ k), summed in log space (k is small: the wrong answers)."""
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
    return min(total, 1.0)


def upper_bound(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound at confidence 1-alpha on a rate with k events in n (bisection)."""
    if n == 0:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if binomial_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(slots=True)
class Bound:
    """The operator's bound δ at confidence 1-α, split over the grid and the two families."""

    delta: float
    alpha: float  # per test: (1 - confidence) split over the grid and the two families
    _max_wrong: list[int] = field(default_factory=list)  # n → the most wrong answers that still certify

    @classmethod
    def of(cls, error_bound: float, confidence: float) -> Bound:
        return cls(error_bound, (1.0 - confidence) / (2 * len(GRID)))

    def max_wrong(self, n: int) -> int:
        """The largest k with P(Binomial(n, δ) ≤ k) ≤ α' (-1: n observations cannot certify even with none wrong)."""
        table = self._max_wrong
        while len(table) <= n:
            m = len(table)
            k = table[-1] if table else -1  # non-decreasing in n
            while binomial_cdf(k + 1, m, self.delta) <= self.alpha and k + 1 < m:
                k += 1
            table.append(k)
        return table[n]

    def certifies(self, wrong: int, n: int) -> bool:
        """The Clopper-Pearson upper bound on k of n is ≤ δ (never when k/n > δ: the bound is above the rate)."""
        return n > 0 and wrong <= self.delta * n and binomial_cdf(wrong, n, self.delta) <= self.alpha

    def refutes(self, wrong: int, n: int) -> bool:
        """Whether the uncertified static threshold must stop: its observed wrong rate is above δ (a point
        estimate, on purpose: refuting only ever turns hits off, so erring towards it is the safe side)."""
        return n >= MIN_REFUTE and wrong > self.delta * n


# Outcomes at or above the static threshold before their wrong rate can switch it off.
MIN_REFUTE = 30
# A grid threshold needs this many observations in its own band [τ, τ + 0.01): outcomes seen only well above τ
# say nothing about queries just above it (feedback arrives for served hits, so the data thins out below).
MIN_BAND = 10


def certified_threshold(similarity: np.ndarray, wrong: np.ndarray, bound: Bound) -> float | None:
    """The lowest grid threshold whose observations at or above it certify the bound, or None."""
    for tau in GRID:  # lowest first: the first certified is the answer (each is tested on its own, see above)
        above = similarity >= tau
        n = int(above.sum())
        band = int((above & (similarity < tau + 0.01)).sum())
        if band >= MIN_BAND and bound.certifies(int(wrong[above].sum()), n):
            return tau
    return None


class Observations:
    """A sliding window of (similarity, wrong) and the threshold it certifies (recomputed when it changes)."""

    __slots__ = ("_items", "_refuted", "_stale", "_tau", "bound")

    def __init__(self, bound: Bound, window: int) -> None:
        self.bound = bound
        self._items: deque[tuple[float, bool]] = deque(maxlen=window)
        self._stale = 0  # observations since the last refresh
        self._tau: float | None = None
        self._refuted: dict[float, bool] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, similarity: float, correct: bool) -> None:
        self._items.append((similarity, not correct))
        self._stale += 1

    def _refresh(self) -> None:
        # Recomputed (about 1 ms at 5,000 outcomes) after every 1 % of new outcomes, not after each: a threshold
        # certified on the window as it stood a few outcomes ago is still certified on that window.
        if self._stale < max(1, len(self._items) // 100):
            return
        data = np.array(self._items, dtype=np.float64).reshape(-1, 2)
        self._tau = certified_threshold(data[:, 0], data[:, 1].astype(bool), self.bound)
        self._refuted.clear()
        self._stale = 0

    def certified(self) -> float | None:
        self._refresh()
        return self._tau

    def refutes(self, tau: float) -> bool:
        """Whether the observations at similarity ≥ tau show a wrong rate above δ."""
        self._refresh()
        if tau not in self._refuted:
            above = [wrong for s, wrong in self._items if s >= tau]
            self._refuted[tau] = self.bound.refutes(sum(above), len(above))
        return self._refuted[tau]


@dataclass(slots=True)
class EntryRecord:
    """What one cache entry has learned: its floor and its own observations (created on its first outcome)."""

    observations: Observations
    floor: float = -1.0  # the highest similarity at which this entry's answer was shown wrong

    def add(self, similarity: float, correct: bool) -> None:
        self.observations.add(similarity, correct)
        if not correct and similarity < 1.0:
            self.floor = max(self.floor, similarity)


class Thresholds:
    """Per tenant pools and per entry records; `allows` is the reuse rule of the module docstring."""

    def __init__(self, error_bound: float, confidence: float, window: int, entry_window: int) -> None:
        self.bound = Bound.of(error_bound, confidence)
        self.window = window
        self.entry_window = entry_window
        self._pools: dict[str, Observations] = {}

    def pool(self, tenant: str) -> Observations:
        pool = self._pools.get(tenant)
        if pool is None:
            pool = self._pools[tenant] = Observations(self.bound, self.window)
        return pool

    def record(self) -> EntryRecord:
        return EntryRecord(Observations(self.bound, self.entry_window))

    def threshold(self, tenant: str, static: float) -> float:
        """The tenant's threshold: certified, else the static one unless refuted (then 1.0: no semantic hits)."""
        pool = self._pools.get(tenant)
        if pool is None or not len(pool):
            return static
        tau = pool.certified()
        if tau is not None:
            return tau
        return 1.0 + 1e-9 if pool.refutes(static) else static

    def allows(self, similarity: float, tenant_threshold: float, record: EntryRecord | None) -> bool:
        if record is None:
            return similarity >= tenant_threshold
        if similarity <= record.floor:
            return False
        own = record.observations.certified()
        return similarity >= (min(own, tenant_threshold) if own is not None else tenant_threshold)

    def observe(self, tenant: str, similarity: float, correct: bool, record: EntryRecord | None) -> None:
        self.pool(tenant).add(similarity, correct)
        if record is not None:
            record.add(similarity, correct)
