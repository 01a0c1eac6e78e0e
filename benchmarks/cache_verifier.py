"""Train the semantic cache's pair verifier (router/cache/verifier.py) on public tuning pairs and ship it small.

Data (benchmarks/DATA_CARD.md): Quora Question Pairs *train* chunks (qqp_train: no question shared, by id or text,
with the test chunks the report sets come from), PAWS-Wiki dev, MRPC train, Medical Question Pairs. Only pairs the
cache would score are used: both prompts pass the guard's hard checks. Each set is split (seeded) into a fitting
part (all cosines: more pairs) and a calibration part, of which only the pairs at cosine ≥ MIN_COSINE (the band
the cache scores) are kept; their scores and labels go into the model file, where the router certifies its
configured error bound from them (Verifier.threshold). The report sets (QQP test chunks: qqp, qqp_large; PAWS
test, MRPC test) are never read here.

`--features extra` (the default) fits on the 8 scalar features only: the first and last layer then give the 768
embedding features (u*v, |u-v|) zero weight. With the pairs available here (about 5,000 in the band), a network
on all 776 features overfits: calibration AUC on the QQP part 0.71-0.74 against 0.78 for the scalar features and
0.775 for the cosine alone (`--features all` reproduces it).

    python benchmarks/cache_data.py --sets qqp_train && python benchmarks/cache_pairs.py qqp_train
    python benchmarks/cache_verifier.py [--hidden 64] [--calibration 0.4] [--out router/cache/weights/verifier-v1.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_data import OUT
from cache_pairs import Pairs, embedded

from router.cache.guard import anchors, hard_agree
from router.cache.verifier import DEFAULT_MODEL, EXTRA, FEATURE_VERSION, Verifier, certified_score, extra_features

SETS = ("qqp_train", "paws_dev", "mrpc_train", "mqp")
MIN_COSINE = 0.75


def pair_features(p: Pairs, min_cosine: float = MIN_COSINE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, label, index into the set) of the pairs the cache would score."""
    cos = p.cosine
    rows, keep = [], []
    for i, (a, b) in enumerate(zip(p.a, p.b, strict=True)):
        if cos[i] < min_cosine:
            continue
        x, y = anchors(b), anchors(a)  # b is the query, a the cached prompt (as in cache_quality.py)
        if not hard_agree(x, y):
            continue
        rows.append(extra_features(float(cos[i]), x, y))
        keep.append(i)
    idx = np.array(keep, dtype=np.int64)
    u, v = p.vb[idx], p.va[idx]
    x = np.hstack([u * v, np.abs(u - v), np.asarray(rows, dtype=np.float32).reshape(-1, len(EXTRA))])
    return x.astype(np.float32), p.label[idx].astype(bool), idx


def digest(name: str) -> str:
    h = hashlib.sha256()
    for suffix in (".jsonl", ".npy"):
        h.update((OUT / f"{name}{suffix}").read_bytes())
    return h.hexdigest()


def split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * (1 - share))
    return order[:cut], order[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=1e-2, help="L2 penalty of the network")
    parser.add_argument("--calibration", type=float, default=0.4, help="share of each set kept for calibration")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--features", choices=("extra", "all"), default="extra")
    args = parser.parse_args()
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    fit_x, fit_y, cal_x, cal_y, cal_set, hashes = [], [], [], [], [], {}
    for k, name in enumerate(SETS):
        p = embedded(name)
        x, y, idx = pair_features(p, -1.0)
        a, b = split(len(y), args.calibration, args.seed + k)
        b = b[p.cosine[idx[b]] >= MIN_COSINE]
        fit_x.append(x[a]), fit_y.append(y[a]), cal_x.append(x[b]), cal_y.append(y[b])
        cal_set += [name] * len(b)
        hashes[name] = digest(name)
        print(f"{name}: {len(y)} pass the hard checks ({int(y.sum())} same), fit {len(a)}, calibration {len(b)}")
    xf, yf = np.vstack(fit_x), np.concatenate(fit_y)
    xc, yc = np.vstack(cal_x), np.concatenate(cal_y)
    cols = np.arange(xf.shape[1]) if args.features == "all" else np.arange(xf.shape[1] - len(EXTRA), xf.shape[1])
    scaler = StandardScaler().fit(xf[:, cols])
    scaler.scale_[scaler.scale_ < 1e-6] = 1.0  # constant features (a soft check no fitted pair failed)
    started = time.perf_counter()
    net = MLPClassifier(
        (args.hidden,), alpha=args.alpha, early_stopping=args.features == "all", max_iter=500, random_state=args.seed
    ).fit(scaler.transform(xf[:, cols]), yf)
    print(f"fitted in {time.perf_counter() - started:.0f} s, {net.n_iter_} epochs, features: {args.features}")
    # Fold the standardisation into the first layer: (x - m) / s @ W + b = x @ (W / s) + (b - (m / s) @ W);
    # features left out get zero rows.
    w1 = np.zeros((xf.shape[1], args.hidden))
    w1[cols] = net.coefs_[0] / scaler.scale_[:, None]
    b1 = net.intercepts_[0] - (scaler.mean_ / scaler.scale_) @ net.coefs_[0]
    verifier = Verifier(
        w1.astype(np.float32),
        b1.astype(np.float32),
        net.coefs_[1].reshape(-1).astype(np.float32),
        float(net.intercepts_[1][0]),
        np.zeros(0),
        np.zeros(0, bool),
        MIN_COSINE,
        "",
    )
    scores = verifier.scores(xc)
    reference = net.predict_proba(scaler.transform(xc[:, cols]))[:, 1]
    assert np.allclose(scores, reference, atol=1e-4), "the folded network disagrees with scikit-learn's"
    for name in SETS:
        part = np.array(cal_set) == name
        if len(set(yc[part])) == 2:
            auc, cos_auc = roc_auc_score(yc[part], scores[part]), roc_auc_score(yc[part], xc[part, -len(EXTRA)])
            print(f"calibration AUC {name}: {auc:.4f} (cosine alone {cos_auc:.4f}), {int(part.sum())} pairs")
    auc, cos_auc = roc_auc_score(yc, scores), roc_auc_score(yc, xc[:, -len(EXTRA)])
    print(f"calibration AUC all: {auc:.4f} (cosine alone {cos_auc:.4f})")
    wrong = ~yc
    for bound in (0.01, 0.02, 0.05, 0.10):
        t = certified_score(scores, wrong, bound, 0.95)
        took = scores >= t if t is not None else np.zeros(len(yc), bool)
        print(
            f"  bound {bound:4.0%}: threshold {t}, accepted {int(took.sum())}, wrong {int((took & wrong).sum())}, "
            f"{int((took & yc).sum()) / max(1, int(yc.sum())):.1%} of calibration positives"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        feature_version=np.int64(FEATURE_VERSION),
        dim=np.int64(embedded(SETS[0]).va.shape[1]),
        w1=verifier.w1.astype(np.float16 if args.hidden > 256 else np.float32),
        b1=verifier.b1,
        w2=verifier.w2,
        b2=np.float64(verifier.b2),
        calibration_scores=scores.astype(np.float32),
        calibration_wrong=wrong,
        calibration_set=np.array(cal_set),
        min_cosine=np.float64(MIN_COSINE),
        data=np.array(
            json.dumps({"sets": hashes, "seed": args.seed, "calibration": args.calibration, **vars(args)}, default=str)
        ),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), sha256 {Verifier.load(args.out).digest[:16]}")


if __name__ == "__main__":
    main()
