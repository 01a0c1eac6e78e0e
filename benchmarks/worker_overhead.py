"""What the engine worker process costs: aggregate tok/s at 1/8/16 streams and the TTFT the process hop adds.

Two contenders in the same run, on the same model, prompts, greedy sampling, slots and thread count:

- `inprocess`: the batched llama.cpp engine inside this process (`isolation: inprocess`).
- `process`: the same engine in a supervised worker process, over msgpack frames on a socket pair
  (`isolation: process`, the default).

Rounds interleave the two (one level at a time, alternating which goes first) so that noise on a shared machine
hits both alike. Aggregate tok/s is the median over rounds; TTFT percentiles are over all requests of all rounds.
The hop itself is also measured alone: a `count` round trip minus the same tokenisation in process.

    python benchmarks/worker_overhead.py                # 5 rounds, levels 1 8 16
    python benchmarks/worker_overhead.py --rounds 3 --max-tokens 32

Prints one JSON line per level and a summary line; results: benchmarks/RESULTS.md, "Engine worker process".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.config import ModelSettings
from router.registry import build_engine
from router.types import ChatRequest, Message, SamplingParams

TOPICS = ["a robot", "a lighthouse", "a dragon", "a city under the sea", "a lost umbrella", "two bakers", "a clock",
          "a cat hotel", "Mars", "a dog detective", "the Alps", "a pirate", "a library", "a violin", "a garden",
          "a river"]  # fmt: skip


def request(i: int, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message("user", f"Write a short story about {TOPICS[i % len(TOPICS)]}.")],
        sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens),
    )


async def level(engine: Any, streams: int, max_tokens: int) -> tuple[float, list[float]]:
    """`streams` concurrent requests, each timed to its first token; returns (aggregate tok/s, TTFTs in s)."""
    ttfts: list[float] = []

    async def one(i: int) -> int:
        t0 = time.perf_counter()
        tokens = 0
        first = True
        async for chunk in engine.generate(request(i, max_tokens)):
            if first and chunk.text:
                ttfts.append(time.perf_counter() - t0)
                first = False
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return tokens

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(streams)))
    return sum(counts) / (time.perf_counter() - t0), ttfts


async def hop_us(worker: Any, local: Any, n: int = 300) -> tuple[float, float]:
    """p50 of a count round trip to the worker, and of the same count in process (µs)."""
    req = request(0, 8)
    remote, inproc = [], []
    for _ in range(n):
        t = time.perf_counter()
        await worker.count_tokens(req)
        remote.append(time.perf_counter() - t)
        t = time.perf_counter()
        local.engine.count_prompt_tokens(req)
        inproc.append(time.perf_counter() - t)
    return statistics.median(remote) * 1e6, statistics.median(inproc) * 1e6


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    slots = max(args.levels)
    base = {"name": "m", "n_ctx": 512, "n_parallel": slots, "max_queue_requests": 64, "n_threads": args.threads}
    engines = {
        "inprocess": build_engine(ModelSettings(**base, isolation="inprocess")),
        "process": build_engine(ModelSettings(**base, isolation="process")),
    }
    for engine in engines.values():
        await engine.start()
    try:
        for engine in engines.values():  # warm-up: first decode allocates buffers
            await level(engine, 2, 8)
        rows: list[dict[str, Any]] = []
        for streams in args.levels:
            tps: dict[str, list[float]] = {k: [] for k in engines}
            ttft: dict[str, list[float]] = {k: [] for k in engines}
            for r in range(args.rounds):
                order = list(engines) if r % 2 == 0 else list(reversed(engines))
                for name in order:
                    rate, firsts = await level(engines[name], streams, args.max_tokens)
                    tps[name].append(rate)
                    ttft[name].extend(firsts)
            row = {"streams": streams}
            for name in engines:
                row[f"{name}_tok_s"] = round(statistics.median(tps[name]), 1)
                row[f"{name}_ttft_p50_ms"] = round(pct(ttft[name], 0.5) * 1e3, 2)
                row[f"{name}_ttft_p99_ms"] = round(pct(ttft[name], 0.99) * 1e3, 2)
            row["ratio_process_vs_inprocess"] = round(row["process_tok_s"] / row["inprocess_tok_s"], 3)
            row["ttft_added_p50_ms"] = round(row["process_ttft_p50_ms"] - row["inprocess_ttft_p50_ms"], 2)
            rows.append(row)
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
            sys.stdout.flush()
        remote, local = await hop_us(engines["process"], engines["inprocess"])
        summary = {
            "summary": True,
            "min_ratio": min(r["ratio_process_vs_inprocess"] for r in rows),
            "ttft_added_p50_ms_c1": rows[0]["ttft_added_p50_ms"],
            "count_round_trip_p50_us": round(remote, 1),
            "count_in_process_p50_us": round(local, 1),
            "hop_p50_us": round(remote - local, 1),
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    finally:
        for engine in engines.values():
            await engine.aclose()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
