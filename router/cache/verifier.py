"""The pair verifier: a small learned model that says whether a cached prompt answers a new query.

Cosine similarity alone cannot separate "the same question in other words" from "a near question" at a 1 % error
bound (benchmarks/RESULTS.md, issue 15): on Quora pairs, 1 % wrong hits is reached only with semantic hits off.
The verifier scores a (query, cached prompt) pair from what the cache already has, so it costs no model call:

    the two unit embeddings u, v     u*v and |u-v| (2 x 384 features: where the two agree and differ)
    cosine, token Jaccard, length ratio, the soft guard checks each pair fails (guard.SOFT_CHECKS), and the
    number of names one prompt has that the other lacks (in any case)

A one-hidden-layer network (trained offline by benchmarks/cache_verifier.py on public pairs, scikit-learn; the
standardisation is folded into the first layer) turns them into a probability in numpy: about 20 µs a pair.

Which score is enough is certified, not tuned: the model file carries the scores and labels of a calibration split
(pairs never used to fit the weights), and `threshold(error_bound, confidence)` walks a fixed grid of scores from
the strictest down, keeping each threshold whose one-sided Clopper-Pearson upper bound (thresholds.py) on the
wrong rate among the calibration pairs it accepts is at most the bound, and stops at the first that fails (fixed
sequence testing, as in Learn-then-Test: no split of the confidence is needed). Thresholds that accept too few
pairs for a test with power are passed over, not tested: those where even a wrong rate of half the bound would not
certify (that depends on the count of accepted pairs, not on their labels, so the guarantee stands). So the
*configured* bound is what is certified, for queries drawn like the calibration pairs (exchangeable with them);
the cache's learned thresholds then keep adapting per tenant and per entry on top (store.py).

The guard's hard checks (guard.HARD_CHECKS) still veto before the verifier runs: the model was fitted and
calibrated only on pairs that pass them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.cache.guard import Anchors, soft_failures
from router.cache.thresholds import binomial_cdf

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
EXTRA = ("cosine", "jaccard", "length_ratio", "tense", "time", "opposite", "swap", "names_only_one")
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "verifier-v1.npz"
# Candidate thresholds on the score, strictest first: 1 - 10^-4 … 1 - 10^-0.3 (≈ 0.5), 160 points.
SCORE_GRID = tuple(float(1.0 - 10.0**e) for e in np.linspace(-4.0, -0.3, 160))


def extra_features(cosine: float, a: Anchors, b: Anchors) -> list[float]:
    """The scalar features of a pair, in EXTRA order."""
    union = len(a.words | b.words)
    jaccard = len(a.words & b.words) / union if union else 1.0
    sizes = len(a.words), len(b.words)
    ratio = min(sizes) / max(sizes) if max(sizes) else 1.0
    only_one = len({n for n in a.names if n not in b.names}) + len({n for n in b.names if n not in a.names})
    return [cosine, jaccard, ratio, *(float(f) for f in soft_failures(a, b)), float(only_one)]


def features(u: np.ndarray, v: np.ndarray, a: Anchors, b: Anchors) -> np.ndarray:
    """The verifier's input for one pair (u: the query's unit embedding, v: the cached prompt's)."""
    extra = np.asarray(extra_features(float(np.dot(u, v)), a, b), dtype=np.float32)
    return np.concatenate([u * v, np.abs(u - v), extra])


def certified_score(scores: np.ndarray, wrong: np.ndarray, error_bound: float, confidence: float) -> float | None:
    """The lowest grid score whose accepted calibration pairs certify the bound (fixed sequence, strictest first)."""
    alpha = 1.0 - confidence
    best = None
    for t in SCORE_GRID:
        accepted = scores >= t
        n = int(accepted.sum())
        if binomial_cdf(int(error_bound * n / 2), n, error_bound) > alpha:
            continue  # too few pairs for half the bound to certify: not a test (labels unseen)
        k = int(wrong[accepted].sum())
        if k > error_bound * n or binomial_cdf(k, n, error_bound) > alpha:
            break  # the first hypothesis not rejected ends the sequence
        best = t
    return best


@dataclass(slots=True)
class Verifier:
    w1: np.ndarray  # [features, hidden], the standardisation folded in
    b1: np.ndarray
    w2: np.ndarray  # [hidden]
    b2: float
    calibration_scores: np.ndarray  # of the calibration split, which the weights never saw
    calibration_wrong: np.ndarray  # bool: that pair was labelled a different request
    min_cosine: float  # pairs below this cosine were not trained on: never a hit
    digest: str  # sha256 of the model file (logged, and in benchmark reports)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Verifier:
        path = Path(path) if path else DEFAULT_MODEL
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as z:
            version = int(z["feature_version"])
            if version != FEATURE_VERSION:
                raise ValueError(f"{path}: feature version {version}, this router computes {FEATURE_VERSION}")
            w1 = z["w1"].astype(np.float32)
            if w1.shape[0] != 2 * int(z["dim"]) + len(EXTRA):
                raise ValueError(f"{path}: {w1.shape[0]} input features, expected 2·dim + {len(EXTRA)}")
            return cls(
                w1,
                z["b1"].astype(np.float32),
                z["w2"].astype(np.float32).reshape(-1),
                float(z["b2"]),
                z["calibration_scores"].astype(np.float64),
                z["calibration_wrong"].astype(bool),
                float(z["min_cosine"]),
                hashlib.sha256(raw).hexdigest(),
            )

    @property
    def dim(self) -> int:
        return (self.w1.shape[0] - len(EXTRA)) // 2

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Probabilities that each row's pair is the same request."""
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(hidden @ self.w2 + self.b2)))

    def score(self, u: np.ndarray, v: np.ndarray, a: Anchors, b: Anchors) -> float:
        return float(self.scores(features(u, v, a, b)[None, :])[0])

    def threshold(self, error_bound: float, confidence: float) -> float | None:
        """The least score certified for the bound on the calibration split, or None (then: no hits)."""
        return certified_score(self.calibration_scores, self.calibration_wrong, error_bound, confidence)


def load_verifier(mode: str, path: str | None, dim: int) -> Verifier | None:
    """The verifier for `cache.verifier` ("auto": the model file when it loads and fits the embedder; "off")."""
    if mode == "off":
        return None
    try:
        verifier = Verifier.load(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("response cache: no pair verifier (%s), so similarity thresholds only", exc)
        return None
    if verifier.dim != dim:
        log.warning("response cache: the pair verifier expects %d-d embeddings, not %d: not used", verifier.dim, dim)
        return None
    return verifier
