"""Local tier under the soak's open-loop traffic: latency by the engine's slot count (issue 19, local p99).

The soak's local requests are short (the template preamble, reused, plus ~30 prompt tokens; 16/24/32 max tokens)
and arrive at random (Poisson). On one llama.cpp thread with Q4_1 weights a step of 8 sequences costs about as
much as 6 single ones (RESULTS.md, "Local engine throughput"), so the engine's throughput hardly grows with the
batch while every running request's time per token grows with it. This replays one Poisson trace of soak-like
requests against the router's own engine (`BatchedLlamaCppEngine` in process: 1 thread, prefix reuse, greedy)
at several `n_parallel` values, interleaved (A B C A B C …) so that the shared machine's noise hits all alike,
and reports latency (arrival to last token) and time to the first token per slot count.

    python benchmarks/local_slots.py                       # n_parallel 8, 4, 2 at 1.5 req/s, 3 rounds of 40 s
    python benchmarks/local_slots.py --slots 8,4 --rate 1.2 --seconds 30 --rounds 2

`--rate` is the local arrival rate (the 28-minute soak at 5 req/s sent 1.5 local requests/s).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.soak import FILLERS, LOCAL_PROMPTS  # noqa: E402
from router.bench.stats import percentile  # noqa: E402
from router.config import ModelSettings  # noqa: E402
from router.engines.llamacpp_batched import BatchedLlamaCppEngine  # noqa: E402
from router.types import ChatRequest, Message, SamplingParams  # noqa: E402


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the segment starts
    text: str
    max_tokens: int


def trace(rate: float, seconds: float, seed: int) -> list[Arrival]:
    """The soak's local requests: Poisson arrivals, its prompts and max_tokens choices."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        text = rng.choice(LOCAL_PROMPTS).format(x=rng.choice(FILLERS)) + f" (#{rng.randrange(10**6)})"
        out.append(Arrival(t, text, rng.choice((16, 24, 32))))


async def segment(engine: BatchedLlamaCppEngine, arrivals: list[Arrival]) -> list[tuple[float, float, int]]:
    """(latency, time to first token, tokens) of each request, arrival to last token."""
    out: list[tuple[float, float, int]] = []
    t0 = time.perf_counter()

    async def one(a: Arrival) -> None:
        await asyncio.sleep(max(0.0, t0 + a.at - time.perf_counter()))
        start = time.perf_counter()
        first, tokens = None, 0
        req = ChatRequest(
            model="m",
            messages=[Message("user", a.text)],
            sampling=SamplingParams(temperature=0, max_tokens=a.max_tokens),
        )
        async for chunk in engine.generate(req):
            if chunk.text and first is None:
                first = time.perf_counter()
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        end = time.perf_counter()
        out.append((end - start, (first or end) - start, tokens))

    await asyncio.gather(*(one(a) for a in arrivals))
    return out


def pcts(xs: list[float]) -> str:
    xs = sorted(xs)
    return " / ".join(f"{percentile(xs, q):.2f}" for q in (50, 90, 99)) + f" / {xs[-1]:.2f}"


async def main(args: argparse.Namespace) -> None:
    engines = {}
    for n in args.slots:
        settings = ModelSettings(name=f"slots-{n}", n_threads=1, n_parallel=n, n_ctx=512, isolation="inprocess")
        engines[n] = BatchedLlamaCppEngine(settings)
        await engines[n].start()
    for engine in engines.values():  # first decode, allocations
        await segment(engine, trace(4.0, 1.0, 0))
    got: dict[int, list[tuple[float, float, int]]] = {n: [] for n in engines}
    p99s: dict[int, list[float]] = {n: [] for n in engines}
    for rnd in range(args.rounds):
        arrivals = trace(args.rate, args.seconds, args.seed + rnd)  # one trace per round, the same for every n
        for n, engine in engines.items():
            begun = time.perf_counter()
            res = await segment(engine, arrivals)
            got[n] += res
            lat = sorted(r[0] for r in res)
            p99s[n].append(percentile(lat, 99))
            tokens = sum(r[2] for r in res)
            print(
                f"round {rnd + 1} n_parallel {n}: {len(res)} requests, latency p50/p90/p99/max {pcts(lat)} s, "
                f"{tokens / (time.perf_counter() - begun):.1f} tok/s over the segment",
                flush=True,
            )
    print()
    print(
        "| n_parallel | requests | latency p50 / p90 / p99 / max (s) | TTFT p50 / p90 / p99 / max (s) | p99 per round |"
    )
    print("|---:|---:|---|---|---|")
    for n in engines:
        lat = [r[0] for r in got[n]]
        ttft = [r[1] for r in got[n]]
        rounds = ", ".join(f"{x:.2f}" for x in p99s[n])
        print(f"| {n} | {len(lat)} | {pcts(lat)} | {pcts(ttft)} | {rounds} |")
    base = args.slots[0]
    for n in args.slots[1:]:
        ratio = [b / a for a, b in zip(p99s[base], p99s[n], strict=True)]
        print(f"p99 n_parallel {n} / {base} per round: {', '.join(f'{r:.2f}' for r in ratio)}")
        print(f"  median {statistics.median(ratio):.2f}")
    for engine in engines.values():
        await engine.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[8, 4, 2])
    p.add_argument("--rate", type=float, default=1.5, help="local requests per second (Poisson)")
    p.add_argument("--seconds", type=float, default=40.0, help="length of one segment")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=19)
    asyncio.run(main(p.parse_args()))
