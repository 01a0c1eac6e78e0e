"""Cache lookup cost in-process: the ANN search at 10k and 100k entries, and the exact tier.

    ANN   one namespace holding N unit vectors (384-d, like all-MiniLM-L6-v2), M=16, ef_construction=100,
          ef_search=64 (the defaults). Timed two ways: `knn_query` called directly, and `SemanticIndex.search`
          as the cache calls it (a hop to the index thread and back to the event loop). Recall@1 against brute
          force on the same queries says what the speed costs in accuracy.
    exact ResponseCache.lookup of a stored request (canonical key + fnv1a_64 + dict + byte compare), in µs.

Vectors are random (a pessimistic case for HNSW: real sentence embeddings cluster and are easier), so that
100k entries build in about a minute without embedding 100k sentences. Half the queries lie near a stored vector
(cosine ≈ 0.95, like a rewording), half are fresh (misses); recall@1 is measured on the first half.

    python benchmarks/cache_ann.py [--sizes 10000 100000] [--queries 2000] [--vectors random real-derived]

`real-derived` vectors cluster around real MiniLM embeddings of public questions (benchmarks/cache_pairs.py),
closer to a cache's contents than uniform random vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from router.cache import ResponseCache
from router.cache.semantic import Namespace, SemanticIndex
from router.config import CacheSettings, Settings
from router.routing.policy import RoutingPolicy
from router.types import ChatRequest, Chunk, Message, SamplingParams, Usage

DIM = 384
PAIRS = Path(__file__).resolve().parent / "out" / "paraphrase"


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def real_derived(rng: np.random.Generator, n: int) -> np.ndarray:
    """N vectors around real sentence embeddings (the question sets cache_pairs.py embedded): each a real
    embedding moved by noise to cosine ≈ 0.9 from it, so they cluster like real prompts do."""
    seeds = np.concatenate([np.load(p) for p in sorted(PAIRS.glob("*.npy"))]).astype(np.float32)
    if not len(seeds):
        raise SystemExit(f"no embeddings in {PAIRS}: run benchmarks/cache_data.py and cache_pairs.py first")
    v = seeds[rng.integers(0, len(seeds), n)] + 0.48 * unit(rng, n)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


async def ann(size: int, queries: int, efs: list[int], rng: np.random.Generator, kind: str) -> None:
    import hnswlib

    data = unit(rng, size) if kind == "random" else real_derived(rng, size)
    settings = CacheSettings()
    index = SemanticIndex(DIM, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                          ef_search=settings.hnsw_ef_search)  # fmt: skip
    ns = Namespace(b"bench")
    start = time.perf_counter()
    # Bulk build on the index thread (the cache adds one by one; this is only faster to set up).
    raw = hnswlib.Index(space="ip", dim=DIM)
    raw.init_index(max_elements=size, M=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                   allow_replace_deleted=True)  # fmt: skip
    raw.add_items(data, np.arange(size, dtype=np.uint64))
    raw.set_ef(settings.hnsw_ef_search)
    ns._index = raw
    build = time.perf_counter() - start
    # queries: near-duplicates of stored vectors (what a cache lookup looks like) and fresh vectors (misses)
    picks = rng.integers(0, size, queries // 2)
    near = data[picks] + 0.33 * unit(rng, len(picks))  # cosine ≈ 0.95 to the stored vector
    fresh = unit(rng, queries - len(picks)) if kind == "random" else real_derived(rng, queries - len(picks))
    qs = np.concatenate([near / np.linalg.norm(near, axis=1, keepdims=True), fresh])
    truth = np.argmax(qs[: len(picks)] @ data.T, axis=1)
    print(f"{size:>7} entries ({kind}): build {build:.1f} s")
    for ef in efs:
        raw.set_ef(ef)
        direct, through = [], []
        for q in qs:
            t = time.perf_counter()
            raw.knn_query(q.reshape(1, -1), k=4)
            direct.append(time.perf_counter() - t)
        for q in qs:
            t = time.perf_counter()
            await index.search(ns, q, 4)
            through.append(time.perf_counter() - t)
        # recall@1 where it matters: a query near a stored entry (a rewording) must find that entry
        labels, _ = raw.knn_query(qs[: len(picks)], k=1)
        recall = float(np.mean(labels[:, 0] == truth))
        us = 1e6
        print(
            f"   ef_search {ef:>3}: knn_query p50 {pct(direct, 50) * us:5.0f} µs  p99 {pct(direct, 99) * us:6.0f} µs"
            f"   via the index thread p50 {pct(through, 50) * us:5.0f} µs  p99 {pct(through, 99) * us:6.0f} µs"
            f"   recall@1 {recall:.3f}"
        )
    index.close()


async def exact(n: int) -> None:
    cache = ResponseCache(CacheSettings(semantic=False))
    await cache.start()
    policy = RoutingPolicy(Settings())
    requests = [
        ChatRequest(
            model="auto",
            messages=[Message("system", "You are terse."), Message("user", f"Question {i}: " + "lorem ipsum " * 40)],
            sampling=SamplingParams(temperature=0.0, max_tokens=64),
        )
        for i in range(n)
    ]
    decisions = [policy.decide(r) for r in requests]

    async def done():
        yield Chunk(finish_reason="stop", usage=Usage(1, 1))

    for r, d in zip(requests, decisions, strict=True):
        lookup = await cache.lookup(r, d)
        async for _ in cache.recording(Chunk(text="answer"), done(), lookup, "m"):
            pass
    await cache.flush()
    samples = []
    for _ in range(3):
        for r, d in zip(requests, decisions, strict=True):
            t = time.perf_counter()
            hit = await cache.lookup(r, d)
            samples.append(time.perf_counter() - t)
            assert hit.status == "hit-exact"
    print(
        f"exact tier: ResponseCache.lookup hit on a ~500-character request, {n} entries: "
        f"p50 {pct(samples, 50) * 1e6:.1f} µs  p99 {pct(samples, 99) * 1e6:.1f} µs"
    )
    await cache.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--ef", type=int, nargs="*", default=[64, 128], help="ef_search values to time")
    parser.add_argument("--vectors", nargs="*", default=["random"], choices=["random", "real-derived"])
    parser.add_argument("--no-exact", action="store_true", help="skip the exact-tier timing")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for kind in args.vectors:
        for size in args.sizes:
            await ann(size, args.queries, args.ef, rng, kind)
    if not args.no_exact:
        await exact(10_000)


if __name__ == "__main__":
    asyncio.run(main())
