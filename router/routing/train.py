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
import logging
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

log = logging.getLogger(__name__)

BITS = 18  # binary head: 262,144 buckets (1 MiB of float32, mostly zeros: compresses well)
TASK_BITS = 16  # task head: 65,536 buckets x K classes
VERSION = "router-v1"
# Prompt length tracks the label in every public instruction set (narrow tasks carry their input text), so a
# model that may read it learns "long = local"; it is left out, and long contexts are a rule's business.
UNUSED_DENSE = frozenset({"length"})


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


def design(texts: list[str], bits: int, chars: bool = True) -> Any:
    """The sparse matrix a head sees: word-bucket counts / sqrt(n words), character-bucket counts / sqrt(n chars)
    (binary head only), then the dense features: exactly what `LinearRouter.predict` sums."""
    from scipy import sparse

    indptr, indices, values = [0], [], []
    width = (1 << bits) + len(FEATURES)
    for text in texts:
        words, grams = fastpath.hashed_buckets(text, bits)
        row: Counter[int] = Counter()
        families = (words, grams) if chars else (words,)
        for family in families:
            norm = math.sqrt(len(family) or 1)
            for bucket, count in Counter(family).items():
                row[bucket] += count / norm
        dense, _, _ = fastpath.features(text)
        for j, value in enumerate(dense):
            if value and FEATURES[j] not in UNUSED_DENSE:
                row[(1 << bits) + j] = value
        indices.extend(row.keys())
        values.extend(row.values())
        indptr.append(len(indices))
    return sparse.csr_matrix((values, indices, indptr), shape=(len(texts), width), dtype=np.float64)


def choose_threshold(p: np.ndarray, y: np.ndarray, min_recall: float = 0.95) -> float:
    """The highest threshold that still sends `min_recall` of the frontier-labelled held-out rows to the frontier:
    a quality floor first (as RouteLLM reports "at 95% of GPT-4 quality"), then as much kept local as it allows."""
    frontier = np.sort(p[y == 1])
    if len(frontier) == 0:
        return 0.5
    return float(frontier[int((1.0 - min_recall) * len(frontier))])


def fit(train: list[dict[str, Any]], heldout: list[dict[str, Any]], c: float, task_c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    texts = [r["prompt"] for r in train]
    y = np.asarray([r["label"] == "frontier" for r in train], dtype=np.int64)
    x = design(texts, BITS)
    binary = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear")
    binary.fit(x, y)
    coef = binary.coef_[0]

    # Only the tasks the data has: a class with no rows would only cost time on every request.
    tasks = [t.value for t in SCORED_TASKS if any((r.get("task") or "general") == t.value for r in train)]
    if len(tasks) < 3:
        raise ValueError(f"the task head needs rows of at least 3 tasks, got {tasks}")
    labels = np.asarray([tasks.index(r.get("task") or "general") for r in train])
    xt = design(texts, TASK_BITS, chars=False)
    multi = LogisticRegression(C=task_c, max_iter=300)
    multi.fit(xt, labels)
    task_bias = multi.intercept_.astype(np.float64)
    task_w = np.ascontiguousarray(multi.coef_[:, : 1 << TASK_BITS].T, dtype=np.float32)
    task_dense = np.ascontiguousarray(multi.coef_[:, 1 << TASK_BITS :].T, dtype=np.float64)

    hx = design([r["prompt"] for r in heldout], BITS)
    hy = np.asarray([r["label"] == "frontier" for r in heldout], dtype=np.int64)
    held_p = binary.predict_proba(hx)[:, 1]
    threshold = choose_threshold(held_p, hy)
    sent = held_p >= threshold
    return {
        "bias": np.float64(binary.intercept_[0]),
        "dense": coef[1 << BITS :].astype(np.float64),
        "buckets": coef[: 1 << BITS].astype(np.float32),
        "task_bias": task_bias,
        "task_dense": task_dense,
        "task_buckets": task_w,
        "tasks": np.asarray(tasks),
        "threshold": threshold,
        "heldout_frontier_recall": round(float(np.mean(sent[hy == 1])), 4),
        "heldout_local_kept": round(float(np.mean(~sent[hy == 0])), 4),
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_path, heldout_path = f"{args.data}/train.jsonl", f"{args.data}/heldout.jsonl"
    started = time.perf_counter()
    train, heldout = read_rows(train_path), read_rows(heldout_path)
    model = fit(train, heldout, args.c, args.task_c)
    threshold = model.pop("threshold")
    meta = {
        "version": VERSION,
        "threshold": threshold,
        "threshold_rule": "highest threshold with >= 95% of held-out frontier-labelled rows sent to the frontier",
        "heldout_frontier_recall": model.pop("heldout_frontier_recall"),
        "heldout_local_kept": model.pop("heldout_local_kept"),
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
    log.info("%s", orjson.dumps({**meta, "seconds": round(time.perf_counter() - started, 1), "out": args.out}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
