"""Time-to-first-token and tokens/s of the default model: through the router vs llama-cpp-python called directly.

Same model file, same prompts, greedy, same max_tokens; rounds interleave the two so machine noise hits both.
The router runs as a real `hybrid-router serve` process and is driven over HTTP with streaming; the direct side
streams `Llama.create_chat_completion` in this process (no HTTP), counting content chunks as tokens.
The ratios are the figures.

    python benchmarks/router_vs_direct.py [--rounds 5] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from router.config import DEFAULT_MODEL_NAME
from router.engines.embedded import default_chat_model

PROMPTS = [
    "Classify the sentiment of this review as positive or negative: 'The battery died after two days.'",
    "Summarise in one sentence: The meeting moved to Thursday because the client asked for more time.",
    "Extract the city from: 'Ship the parcel to 12 Rue de Rivoli, Paris, before Friday.'",
    "Write a short poem about the sea.",
]


def direct(llama, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = None
    stream = llama.create_chat_completion(
        messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0, stream=True
    )
    n = 0
    for chunk in stream:
        if chunk["choices"][0]["delta"].get("content"):
            n += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start, n


async def via_router(
    session: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int
) -> tuple[float, float, int]:
    body = {
        "model": DEFAULT_MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = None
    n = 0
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps(body)) as resp:
        async for line in resp.content:
            is_token = line.startswith(b"data: {") and b'"content":"' in line and b'"role"' not in line
            if is_token:
                n += 1  # content chunks, counted the same way as on the direct side
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start, n


def summarise(name: str, rows: list[tuple[float, float, int]]) -> tuple[float, float]:
    ttft = statistics.median(r[0] for r in rows) * 1000
    tps = sum(r[2] for r in rows) / sum(r[1] - r[0] for r in rows)  # decode speed after the first token
    print(f"{name:>8}: TTFT p50 {ttft:7.1f} ms · decode {tps:6.1f} chunks/s · {sum(r[2] for r in rows)} chunks")
    return ttft, tps


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, the same on both sides")
    parser.add_argument("--prefix-reuse", default="true", choices=["true", "false"], help="router prefix_reuse")
    args = parser.parse_args()

    from llama_cpp import Llama

    path = str(default_chat_model())
    llama = Llama(path, n_ctx=2048, n_threads=args.threads, verbose=False)
    config = Path(tempfile.mkdtemp()) / "router.yaml"
    config.write_text(
        f"models:\n  - {{name: {DEFAULT_MODEL_NAME}, n_threads: {args.threads}, prefix_reuse: {args.prefix_reuse}}}\n"
        "cache: {enabled: false}\n"  # every round repeats the prompts: a cache hit is not a model call
        "accounting: {ledger_path: ''}\n"
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://[\d.]+:\d+", line).group(0)  # type: ignore[union-attr]
        rows: dict[str, list] = {"direct": [], "router": []}
        async with aiohttp.ClientSession() as session:
            await via_router(session, url, "warm up", 4)
            direct(llama, "warm up", 4)
            for _ in range(args.rounds):
                for prompt in PROMPTS:
                    rows["direct"].append(direct(llama, prompt, args.max_tokens))
                    rows["router"].append(await via_router(session, url, prompt, args.max_tokens))
        d_ttft, d_tps = summarise("direct", rows["direct"])
        r_ttft, r_tps = summarise("router", rows["router"])
        print(f"router/direct: TTFT x{r_ttft / d_ttft:.3f} (+{r_ttft - d_ttft:.2f} ms) · decode x{r_tps / d_tps:.3f}")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
