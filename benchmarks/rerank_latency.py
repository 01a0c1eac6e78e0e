"""/v1/rerank latency for 1 query x 32 documents, with peers measured in the same run.

Three figures, each the p50/p95 of `--rounds` repetitions after a warm-up:
  1. in-process: RerankService.score (the embedding engine: 33 texts embedded in one batch, then dot products);
  2. the peer: the same 33 texts embedded one by one (what an unbatched bi-encoder reranker would pay);
  3. over HTTP: POST /v1/rerank on a real router (aiohttp client, one request at a time), and 8 concurrent
     clients (coalesced by the embedding micro-batcher) with their per-request latency.

    python benchmarks/rerank_latency.py [--rounds 50] [--docs 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from router.cache.embed import EmbeddingService
from router.config import EmbeddingSettings, RerankSettings, Settings
from router.engines.rerank import RerankService

sys.path.insert(0, str(Path(__file__).parent))
from cache_e2e import Background, wait_ready

QUERY = "How do I get a refund for a parcel that arrived damaged?"
TOPICS = ("refund", "parcel", "invoice", "laptop", "password reset", "delivery", "warranty", "billing address")
VERBS = ("arrived damaged", "was charged twice", "never came", "stopped working")


def documents(n: int) -> list[str]:
    # Support-article-sized passages (~40 words), varied so that the ranking is not trivial.
    return [
        f"Article {i}: what to do when your {TOPICS[i % len(TOPICS)]} {VERBS[i % len(VERBS)]}. "
        f"Open the order page, choose the item, and follow the steps; our team answers within {i % 5 + 1} days. "
        "Keep the packaging and photos of any damage, and quote the order number in every message."
        for i in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def line(name: str, ms: list[float]) -> str:
    return f"{name:<48} p50 {statistics.median(ms):7.2f} ms   p95 {pct(ms, 0.95):7.2f} ms   (n={len(ms)})"


async def in_process(rounds: int, docs: list[str]) -> None:
    embeddings = EmbeddingService(EmbeddingSettings())
    await embeddings.start()
    service = RerankService(RerankSettings(), embeddings)
    batched, single = [], []
    for r in range(rounds + 3):
        t = time.perf_counter()
        await service.score(QUERY, docs)
        if r >= 3:
            batched.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        for text in [QUERY, *docs]:
            await embeddings.embed([text])
        if r >= 3:
            single.append((time.perf_counter() - t) * 1000)
    print(line(f"in-process rerank, 1 x {len(docs)} (one batch)", batched))
    print(line(f"peer: {len(docs) + 1} texts embedded one by one", single))
    print(f"{'':<48} batched is {statistics.median(single) / statistics.median(batched):.2f}x faster (p50)")
    await service.aclose()
    await embeddings.aclose()


async def over_http(rounds: int, docs: list[str]) -> None:
    settings = Settings(cache={"enabled": False})
    with Background(settings) as base:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base)
            body = {"model": "minilm-rerank", "query": QUERY, "documents": docs, "top_n": 5}

            async def one() -> float:
                t = time.perf_counter()
                async with session.post(base + "/v1/rerank", json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                return (time.perf_counter() - t) * 1000

            for _ in range(3):
                await one()
            serial = [await one() for _ in range(rounds)]
            print(line(f"HTTP /v1/rerank, 1 x {len(docs)}, one client", serial))
            concurrent: list[float] = []
            t = time.perf_counter()
            for _ in range(max(1, rounds // 8)):
                concurrent.extend(await asyncio.gather(*(one() for _ in range(8))))
            wall = time.perf_counter() - t
            print(line(f"HTTP /v1/rerank, 1 x {len(docs)}, 8 concurrent", concurrent))
            print(f"{'':<48} {len(concurrent) / wall:.1f} requests/s with 8 concurrent clients")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--docs", type=int, default=32)
    args = parser.parse_args()
    docs = documents(args.docs)
    asyncio.run(in_process(args.rounds, docs))
    asyncio.run(over_http(args.rounds, docs))


if __name__ == "__main__":
    main()
