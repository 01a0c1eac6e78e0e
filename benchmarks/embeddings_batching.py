"""/v1/embeddings throughput at 16 concurrent clients: the micro-batcher vs one-by-one, in the same run.

Two routers in turn, identical but for `embeddings.max_batch_size` (32 with a 2 ms wait, vs 1 = one inference
per request). 16 clients each send requests of one sentence back to back for a fixed count; we report
embeddings per second and request latency. Also, in-process, what batching saves in the model itself.

    python benchmarks/embeddings_batching.py [--clients 16] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from router.app import EMBEDDINGS
from router.cache.embed import load_embedder
from router.config import CacheSettings, EmbeddingSettings, Settings

sys.path.insert(0, str(Path(__file__).parent))
from cache_e2e import Background, wait_ready

SENTENCES = [
    f"Customer {i} wrote: the {thing} arrived {when} and {verdict}."
    for i, (thing, when, verdict) in enumerate(
        (t, w, v)
        for t in ("parcel", "invoice", "replacement part", "laptop")
        for w in ("late", "on time", "damaged", "early")
        for v in ("I am happy", "I want a refund", "support never answered", "it works")
    )
]


async def load(base: str, clients: int, requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def client(c: int, session: aiohttp.ClientSession) -> None:
        for r in range(requests):
            body = {"model": "all-minilm-l6-v2", "input": SENTENCES[(c * requests + r) % len(SENTENCES)]}
            start = time.perf_counter()
            async with session.post(base + "/v1/embeddings", json=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, base)
        await asyncio.gather(*(client(c, session) for c in range(clients)))  # warm-up round
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(client(c, session) for c in range(clients)))
        elapsed = time.perf_counter() - start
    return clients * requests / elapsed, latencies


def in_process(n: int = 16, rounds: int = 20) -> None:
    model = load_embedder(EmbeddingSettings())
    texts = SENTENCES[:n]
    model.encode(texts)
    start = time.perf_counter()
    for _ in range(rounds):
        for t in texts:
            model.encode([t])
    single = (time.perf_counter() - start) / (rounds * n)
    start = time.perf_counter()
    for _ in range(rounds):
        model.encode(texts)
    batched = (time.perf_counter() - start) / (rounds * n)
    print(
        f"in-process model only: one-by-one {single * 1000:.2f} ms/text, batch of {n} {batched * 1000:.2f} ms/text "
        f"({single / batched:.1f}x)"
    )
    model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=40, help="per client")
    parser.add_argument("--wait-ms", type=float, default=2.0, help="the micro-batcher's max_wait_ms")
    parser.add_argument("--threads", type=int, default=1, help="embeddings.threads for both runs")
    args = parser.parse_args()
    print(f"{args.clients} concurrent clients x {args.requests} requests of one sentence each")
    results = {}
    for name, batch, wait in (("micro-batcher", 32, args.wait_ms), ("one-by-one", 1, 0.0)):
        embeddings = EmbeddingSettings(max_batch_size=batch, max_wait_ms=wait, threads=args.threads)
        settings = Settings(embeddings=embeddings, cache=CacheSettings(enabled=False))
        background = Background(settings)
        with background as base:
            rate, latencies = asyncio.run(load(base, args.clients, args.requests))
            stats = background.server.app[EMBEDDINGS].stats()
        p50 = statistics.median(latencies)
        p99 = statistics.quantiles(latencies, n=100)[98]
        results[name] = rate
        print(
            f"{name:<14} {rate:8.1f} embeddings/s   latency p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms"
            f"   mean batch {stats['mean_batch']}"
        )
    print(f"micro-batcher / one-by-one: {results['micro-batcher'] / results['one-by-one']:.1f}x")
    in_process()


if __name__ == "__main__":
    main()
