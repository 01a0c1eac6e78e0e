"""Semantic cache quality on public pair sets: right hits, wrong hits and misses; tuned on some, reported on another.

Each labelled pair (a, b) is one lookup: `a` is the cached entry, `b` the query. The query hits when it passes the
guard (router/cache/guard.py, the cache's own function) and its cosine similarity to `a` reaches the threshold,
both on real all-MiniLM-L6-v2 int8 embeddings of `embedding_text(...)`, as the cache computes them.

    right   a hit on a pair labelled the same request        wrong   a hit on a pair labelled different
    miss    no hit (on either label)                         wrong-hit rate = wrong / (right + wrong)

Sets (benchmarks/cache_data.py builds them, benchmarks/DATA_CARD.md says where from and under which licence):
tuning = PAWS-Wiki dev, MRPC train, Medical Question Pairs, this project's corpus; report = Quora Question Pairs
(test chunks), never used to choose a threshold. Steps:

1. static: the cold-start threshold τ0 is the lowest grid value whose wrong-hit rate is at most the bound on each
   prompt-like tuning set: MQP and this project's own corpus (benchmarks/workloads/cache_corpus.jsonl as pairs).
   PAWS and MRPC (declarative sentences, adversarial word swaps) are reported alongside as stress sets; no τ in
   the grid meets the bound on them.
2. learned: the report set is shuffled (seeded) and split in two. The first half plays verified traffic: each
   guarded pair at similarity ≥ observe_floor is one outcome (as a miss near a candidate or an explored hit gives
   one), fed to router/cache/thresholds.py; the second half is served with the threshold those outcomes certify.
   Reported for several bounds δ, with τ0 on the same second half for comparison.
3. reference: a threshold sweep on the report set, guard on and off (for reading only: choosing from it would be
   tuning on the report set).
4. verifier: the shipped pair verifier (router/cache/verifier.py, trained by benchmarks/cache_verifier.py on QQP
   train chunks, PAWS dev, MRPC train and MQP) on report sets it never saw: QQP test chunks (qqp_large), PAWS test,
   MRPC test. A pair hits when it passes the guard's hard checks, its cosine is at least the model's min_cosine
   and its score reaches the threshold the model's calibration split certifies for the bound, exactly as the
   cache decides (Verifier.threshold).

    python benchmarks/cache_data.py && python benchmarks/cache_quality.py [--bound 0.01] [--examples 10]
    python benchmarks/cache_quality.py --only-verifier [--verifier-report qqp_large paws_test mrpc_test]
                                       [--wrong-sample 50 --seed 15]   # wrong hits to check by hand
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_data import REPORT, TUNING
from cache_pairs import Pairs, embedded
from cache_verifier import pair_features

from router.cache.guard import agree, anchors, why_not
from router.cache.thresholds import GRID, Thresholds
from router.cache.verifier import Verifier
from router.config import CacheSettings

QUESTION_TUNING = ("mqp", "corpus")  # the prompt-like tuning sets: τ0 must meet the bound on each
SWEEP = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98)


def guarded(p: Pairs) -> np.ndarray:
    return np.array([agree(anchors(a), anchors(b)) for a, b in zip(p.a, p.b, strict=True)])


def counts(hit: np.ndarray, right: np.ndarray) -> tuple[int, int, int]:
    return int((hit & right).sum()), int((hit & ~right).sum()), int((~hit).sum())


def line(label: str, hit: np.ndarray, right: np.ndarray) -> str:
    r, w, m = counts(hit, right)
    n, positives = len(right), int(right.sum())
    rate = w / (r + w) if r + w else 0.0
    return (
        f"{label:<34} right {r:5d} ({r / n:6.1%} of pairs, {r / max(1, positives):6.1%} of positives)  "
        f"wrong {w:4d}  miss {m:5d}  wrong-hit rate {rate:6.2%}"
    )


def tune(p: Pairs, guard: np.ndarray, bound: float) -> float:
    cos, right = p.cosine, p.label.astype(bool)
    for tau in GRID:
        r, w, _ = counts(guard & (cos >= tau), right)
        if r + w and w / (r + w) <= bound:
            return tau
    return 1.0


def learned(p: Pairs, guard: np.ndarray, bound: float, floor: float, seed: int = 15) -> tuple[np.ndarray, float, str]:
    """(mask of the served half, the threshold its first half leads to, how it got there)."""
    order = np.random.default_rng(seed).permutation(len(p.label))
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    cos, right = p.cosine, p.label.astype(bool)
    settings = CacheSettings()
    thresholds = Thresholds(bound, settings.confidence, settings.calibration_window, settings.entry_window)
    used = 0
    for i in first:
        if guard[i] and cos[i] >= floor:
            thresholds.observe("tenant", float(cos[i]), bool(right[i]), None)
            used += 1
    served = np.zeros(len(right), dtype=bool)
    served[second] = True
    tau = thresholds.threshold("tenant", settings.similarity_threshold)
    if tau > 1.0:
        return served, np.inf, f"{used} outcomes: the static threshold is refuted, semantic hits off"
    if thresholds.pool("tenant").certified() is None:
        return served, tau, f"{used} outcomes: none certified, static τ0 {tau:.2f} kept (not refuted)"
    return served, tau, f"{used} outcomes: certified τ {tau:.2f}"


def verifier_report(names: list[str], bounds: list[float], model: str | None, wrong_sample: int, seed: int) -> None:
    verifier = Verifier.load(model)
    print(f"\n4. pair verifier {verifier.digest[:12]} (min cosine {verifier.min_cosine}), on sets it never saw")
    for name in names:
        p = embedded(name)
        right = p.label.astype(bool)
        x, _, idx = pair_features(p, verifier.min_cosine)
        scores = np.zeros(len(right))
        scores[idx] = verifier.scores(x)
        scored = np.zeros(len(right), dtype=bool)
        scored[idx] = True
        print(f"  {name}: {len(right)} pairs, {int(right.sum())} positive, {len(idx)} scored (hard checks, cosine)")
        for bound in bounds:
            t = verifier.threshold(bound, 0.95)
            hit = scored & (scores >= t) if t is not None else np.zeros(len(right), dtype=bool)
            label = f"{name} δ {bound:.0%} score ≥ {t:.4f}" if t is not None else f"{name} δ {bound:.0%} (none)"
            print("  " + line(label, hit, right))
            if wrong_sample and bound == bounds[0]:
                wrong = np.flatnonzero(hit & ~right)
                pick = np.random.default_rng(seed).permutation(wrong)[:wrong_sample]
                for i in sorted(pick):
                    print(f"    wrong {p.cosine[i]:.3f} {scores[i]:.4f} #{i}: {p.a[i]!r} / {p.b[i]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound", type=float, default=0.01, help="wrong-hit bound δ (the default error_bound)")
    parser.add_argument("--bounds", type=float, nargs="*", default=[0.01, 0.05, 0.10], help="δ for the learned run")
    parser.add_argument("--examples", type=int, default=0, help="print this many wrong hits of the report set")
    parser.add_argument("--report", nargs="*", default=list(REPORT), help="report sets (qqp_large: 8,000 pairs)")
    parser.add_argument("--verifier-report", nargs="*", default=["qqp_large", "paws_test", "mrpc_test"])
    parser.add_argument("--verifier-model", default=None, help="the verifier's .npz (default: the shipped one)")
    parser.add_argument("--only-verifier", action="store_true", help="part 4 only")
    parser.add_argument("--wrong-sample", type=int, default=0, help="print a seeded sample of this many wrong hits")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    bounds = sorted({args.bound, *args.bounds}, key=lambda b: (b != args.bound, b))
    if args.only_verifier:
        verifier_report(args.verifier_report, bounds, args.verifier_model, args.wrong_sample, args.seed)
        return
    report = tuple(args.report)
    sets = {name: embedded(name) for name in (*TUNING, *report)}
    guards = {name: guarded(p) for name, p in sets.items()}
    for name, p in sets.items():
        print(
            f"{name}: {len(p.label)} pairs, {int(p.label.sum())} positive ({'report' if name in report else 'tuning'})"
        )

    taus = {name: tune(sets[name], guards[name], args.bound) for name in QUESTION_TUNING}
    tau0 = max(taus.values())
    what = ", ".join(f"{name} {tau:.2f}" for name, tau in taus.items())
    print(f"\n1. static: τ0 = {tau0:.2f}, the lowest grid value with wrong-hit rate ≤ {args.bound:.0%} on each: {what}")
    for name, p in sets.items():
        right = p.label.astype(bool)
        print(line(f"{name} @ τ0 {tau0:.2f}", guards[name] & (p.cosine >= tau0), right))

    print("\n2. learned: outcomes from the first half of the report set, served on the second half")
    floor = CacheSettings().observe_floor
    for name in report:
        p, guard = sets[name], guards[name]
        right = p.label.astype(bool)
        for delta in args.bounds:
            served, tau, how = learned(p, guard, delta, floor)
            print(f"  δ {delta:.0%}: {how}")
            hit = served & guard & (p.cosine >= tau)
            print("  " + line(f"{name} 2nd half, learned δ {delta:.0%}", hit[served], right[served]))
        served, _, _ = learned(p, guard, args.bound, floor)
        print(
            "  " + line(f"{name} 2nd half, static τ0 {tau0:.2f}", (guard & (p.cosine >= tau0))[served], right[served])
        )

    print("\n3. reference sweep on the report set (not used to choose anything)")
    for name in report:
        p, guard = sets[name], guards[name]
        right = p.label.astype(bool)
        for tau in SWEEP:
            print(line(f"{name} τ {tau:.2f} guard on", guard & (p.cosine >= tau), right))
        for tau in (0.90, 0.95, 0.98):
            print(line(f"{name} τ {tau:.2f} guard off", p.cosine >= tau, right))
        if args.examples:
            wrong = np.flatnonzero(guard & (p.cosine >= tau0) & ~right)
            for i in wrong[np.argsort(-p.cosine[wrong])][: args.examples]:
                print(f"    wrong {p.cosine[i]:.3f}: {p.a[i]!r} / {p.b[i]!r}")
            missed = np.flatnonzero(~guard & (p.cosine >= tau0) & right)
            for i in missed[: args.examples]:
                print(
                    f"    refused by the guard ({why_not(anchors(p.a[i]), anchors(p.b[i]))}): {p.a[i]!r} / {p.b[i]!r}"
                )
    verifier_report(args.verifier_report, bounds, args.verifier_model, args.wrong_sample, args.seed)


if __name__ == "__main__":
    main()
