"""Train the learned router's two heads from labelled prompts: `python -m router.routing.train`.

Input: JSON lines `{"prompt", "label": local|frontier, "task"}` (benchmarks/routing_data.py builds them from
public sets; see benchmarks/ROUTING_DATA_CARD.md). Both heads are L2-regularised logistic regressions
(scikit-learn, an offline dependency: `pip install ".[train]"`) over exactly the features the hot path computes,
so the fitted weights drop into `fastpath.LinearRouter` unchanged. The decision threshold is chosen on the
held-out file (never on the training rows) and stored in the model's metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from router import fastpath
from router.routing.learned import DEFAULT_MODEL, save
from router.routing.lexicon import FEATURES
from router.routing.taxonomy import SCORED_TASKS

BITS = 18  # binary head: 262,144 buckets (1 MiB of float32, mostly zeros: compresses well)
TASK_BITS = 16  # task head: 65,536 buckets x K classes
VERSION = "router-v1"


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row.get("prompt"), str) or row.get("label") not in ("local", "frontier"):
                raise ValueError(f"{path}:{n}: needs a 'prompt' string and 'label' local|frontier")
            rows.append(row)
    return rows


def design(texts: list[str], bits: int) -> Any:
    """The sparse matrix the heads see: bucket counts / sqrt(n features), then the dense features."""
    from scipy import sparse

    indptr, indices, values = [0], [], []
    n_dense = len(FEATURES)
    width = (1 << bits) + n_dense
    for text in texts:
        buckets = fastpath.hashed_buckets(text, bits)
        norm = math.sqrt(len(buckets) or 1)
        for bucket, count in Counter(buckets).items():
            indices.append(bucket)
            values.append(count / norm)
        dense, _, _ = fastpath.features(text)
        for j, value in enumerate(dense):
            if value:
                indices.append((1 << bits) + j)
                values.append(value)
        indptr.append(len(indices))
    return sparse.csr_matrix((values, indices, indptr), shape=(len(texts), width), dtype=np.float64)


def choose_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold with the best balanced accuracy on held-out rows (equal weight to both kinds of error)."""
    best_t, best = 0.5, -1.0
    for t in np.linspace(0.05, 0.95, 181):
        pred = p >= t
        recall_f = float(np.mean(pred[y == 1])) if np.any(y == 1) else 1.0
        recall_l = float(np.mean(~pred[y == 0])) if np.any(y == 0) else 1.0
        score = (recall_f + recall_l) / 2
        if score > best:
            best_t, best = float(t), score
    return round(best_t, 4)


def fit(train: list[dict[str, Any]], heldout: list[dict[str, Any]], c: float, task_c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    n_dense = len(FEATURES)
    texts = [r["prompt"] for r in train]
    y = np.asarray([r["label"] == "frontier" for r in train], dtype=np.int64)
    x = design(texts, BITS)
    binary = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear")
    binary.fit(x, y)
    coef = binary.coef_[0]

    tasks = [t.value for t in SCORED_TASKS]
    labels = np.asarray([tasks.index(r.get("task") or "general") for r in train])
    present = sorted(set(labels.tolist()))
    xt = design(texts, TASK_BITS)
    multi = LogisticRegression(C=task_c, max_iter=300)
    multi.fit(xt, labels)
    task_bias = np.full(len(tasks), -30.0)  # classes never seen in training are never predicted
    task_w = np.zeros((1 << TASK_BITS, len(tasks)), dtype=np.float32)
    task_dense = np.zeros((n_dense, len(tasks)))
    if len(present) < 3:
        raise ValueError(f"the task head needs rows of at least 3 tasks, got {len(present)}")
    for row, cls in enumerate(multi.classes_):
        task_bias[cls] = multi.intercept_[row]
        task_w[:, cls] = multi.coef_[row, : 1 << TASK_BITS]
        task_dense[:, cls] = multi.coef_[row, 1 << TASK_BITS :]

    hx = design([r["prompt"] for r in heldout], BITS)
    hy = np.asarray([r["label"] == "frontier" for r in heldout], dtype=np.int64)
    threshold = choose_threshold(binary.predict_proba(hx)[:, 1], hy)
    return {
        "bias": np.float64(binary.intercept_[0]),
        "dense": coef[1 << BITS :].astype(np.float64),
        "buckets": coef[: 1 << BITS].astype(np.float32),
        "task_bias": task_bias,
        "task_dense": task_dense,
        "task_buckets": task_w,
        "tasks": np.asarray(tasks),
        "threshold": threshold,
    }


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router.routing.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/routing", help="folder with train.jsonl and heldout.jsonl")
    parser.add_argument("--out", default=str(DEFAULT_MODEL), help=f"model file to write (default {DEFAULT_MODEL})")
    parser.add_argument("--c", type=float, default=4.0, help="inverse L2 strength, binary head (default 4)")
    parser.add_argument("--task-c", type=float, default=4.0, help="inverse L2 strength, task head (default 4)")
    args = parser.parse_args(argv)
    train_path, heldout_path = f"{args.data}/train.jsonl", f"{args.data}/heldout.jsonl"
    started = time.perf_counter()
    train, heldout = read_rows(train_path), read_rows(heldout_path)
    model = fit(train, heldout, args.c, args.task_c)
    threshold = model.pop("threshold")
    meta = {
        "version": VERSION,
        "threshold": threshold,
        "bits": BITS,
        "task_bits": TASK_BITS,
        "train_rows": len(train),
        "heldout_rows": len(heldout),
        "train_sha256": _digest(train_path),
        "heldout_sha256": _digest(heldout_path),
        "labels": dict(Counter(r["label"] for r in train)),
        "c": args.c,
        "task_c": args.task_c,
        "data_card": "benchmarks/ROUTING_DATA_CARD.md",
    }
    save(args.out, meta, **model)
    print(orjson.dumps({**meta, "seconds": round(time.perf_counter() - started, 1), "out": args.out}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
