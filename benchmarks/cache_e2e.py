"""End-to-end latency through the real server: a cache hit vs a model call, in the same run.

The router runs in this process (its own thread and event loop) on the embedded defaults: SmolLM2-135M through
llama.cpp and all-MiniLM-L6-v2 for the semantic tier. One client sends requests one at a time over HTTP:

    model call     each prompt once with `Cache-Control: no-cache` (always runs the model)
    miss + store   each prompt once normally (runs the model, stores the answer)
    hit-exact      the same requests again
    hit-semantic   a rewording of each (lower case, no closing punctuation, "please" added)

    python benchmarks/cache_e2e.py [--prompts 20] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

import aiohttp
import uvloop

from router.config import DEFAULT_MODEL_NAME, Settings
from router.server import Server

SUBJECTS = [
    "volcanoes", "glaciers", "honeybees", "lighthouses", "submarines", "the printing press", "coral reefs",
    "black holes", "the Silk Road", "penguins", "solar panels", "the Roman aqueducts", "tea ceremonies",
    "hot air balloons", "octopuses", "the Great Wall", "bamboo", "electric eels", "sundials", "the Arctic fox",
    "mountain gorillas", "the compass", "desert cacti", "tidal energy",
]  # fmt: skip


class Background:
    """The router in a thread with its own uvloop loop (as a separate process would be)."""

    def __init__(self, settings: Settings) -> None:
        self.loop = uvloop.new_event_loop()
        self.server = Server(settings.model_copy(update={"server": settings.server.model_copy(update={"port": 0})}))
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await self.server.start()
        self.ready.set()
        await self._stop.wait()
        await self.server.stop()

    def __enter__(self) -> str:
        self.thread.start()
        self.ready.wait(120)
        return self.server.base_url

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        async with session.get(base + "/readyz") as r:
            if r.status == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("router not ready")


async def timed(session: aiohttp.ClientSession, base: str, prompt: str, max_tokens: int, **headers: str):
    body = {
        "model": DEFAULT_MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    start = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
        elapsed = time.perf_counter() - start
        return elapsed, r.headers.get("x-router-cache")


def row(name: str, samples: list[float], statuses: list[str | None]) -> float:
    p50 = statistics.median(samples)
    p99 = statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]
    seen = ",".join(sorted({s or "?" for s in statuses}))
    print(f"{name:<14} p50 {p50 * 1000:9.2f} ms   p99 {p99 * 1000:9.2f} ms   x-router-cache: {seen}")
    return p50


async def run(base: str, prompts: list[str], max_tokens: int) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        await timed(session, base, "warm-up", max_tokens, **{"Cache-Control": "no-store"})
        results: dict[str, tuple[list[float], list[str | None]]] = {}

        async def phase(name: str, texts: list[str], **headers: str) -> None:
            samples, statuses = [], []
            for text in texts:
                elapsed, status = await timed(session, base, text, max_tokens, **headers)
                samples.append(elapsed)
                statuses.append(status)
                await asyncio.sleep(0.02)  # let the store task finish: this measures lookups, not races
            results[name] = (samples, statuses)

        reworded = ["please " + p.lower().rstrip(".?") for p in prompts]
        await phase("model call", prompts, **{"Cache-Control": "no-cache, no-store"})
        await phase("miss + store", prompts)
        await phase("hit-exact", prompts)
        await phase("hit-semantic", reworded)
        model = row("model call", *results["model call"])
        row("miss + store", *results["miss + store"])
        exact = row("hit-exact", *results["hit-exact"])
        semantic = row("hit-semantic", *results["hit-semantic"])
        print(f"speed-up at p50: exact {model / exact:.0f}x, semantic {model / semantic:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    prompts = [f"Write one sentence about {s}." for s in SUBJECTS[: args.prompts]]
    print(f"{len(prompts)} prompts, max_tokens {args.max_tokens}, sequential client, same process and run")
    with Background(Settings()) as base:
        asyncio.run(run(base, prompts, args.max_tokens))


if __name__ == "__main__":
    main()
