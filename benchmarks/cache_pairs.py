"""Pair sets embedded once by the real embedding model (the router's own, as the cache embeds: embedding_text),
with the vectors kept in benchmarks/out/paraphrase/<set>.npy so later runs skip the slow part.

    python benchmarks/cache_pairs.py [sets…]     # embed (and cache) the sets built by cache_data.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_data import OUT, REPORT, TUNING, load

from router.cache.embed import load_embedder
from router.cache.keys import embedding_text
from router.config import EmbeddingSettings


@dataclass(slots=True)
class Pairs:
    name: str
    a: list[str]
    b: list[str]
    label: np.ndarray  # 1 = the same request
    va: np.ndarray  # unit vectors of a
    vb: np.ndarray

    @property
    def cosine(self) -> np.ndarray:
        return np.einsum("ij,ij->i", self.va, self.vb)


def embedded(name: str, batch: int = 64) -> Pairs:
    rows = load(name)
    a, b = [r["a"] for r in rows], [r["b"] for r in rows]
    label = np.array([r["label"] for r in rows], dtype=np.int8)
    path = OUT / f"{name}.npy"
    if path.exists():
        vectors = np.load(path)
        if len(vectors) == 2 * len(rows):
            return Pairs(name, a, b, label, vectors[: len(rows)], vectors[len(rows) :])
    embedder = load_embedder(EmbeddingSettings())
    texts = [embedding_text(t) for t in a + b]
    started = time.perf_counter()
    parts = [embedder.encode(texts[i : i + batch]).vectors for i in range(0, len(texts), batch)]
    embedder.close()
    vectors = np.concatenate(parts).astype(np.float32)
    print(f"{name}: embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    np.save(path, vectors)
    return Pairs(name, a, b, label, vectors[: len(rows)], vectors[len(rows) :])


if __name__ == "__main__":
    for name in sys.argv[1:] or [*TUNING, *REPORT]:
        p = embedded(name)
        print(f"{name}: {len(p.label)} pairs, median cosine {np.median(p.cosine):.3f}")
