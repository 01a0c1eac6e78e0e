"""Time to first token of streamed `auto` requests served locally: escalation.streaming prefix vs buffer.

Two real `hybrid-router serve` processes, identical but for `frontier.escalation.streaming`, each with a frontier
model configured (so local answers are judged for escalation; the confidence floor is set so that none escalates
and both serve the same local answers). Rounds interleave the two; the ratio is the figure.

    python benchmarks/streaming_ttft.py [--rounds 4] [--max-tokens 64]
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

PROMPTS = [  # narrow tasks the router keeps local, with answers longer than the judged prefix
    "Summarize this paragraph in three sentences: The city council met on Tuesday to discuss the new budget. "
    "The plan adds money for parks and libraries, cuts road repairs, and raises parking fees downtown. Several "
    "residents spoke against the fee increase, while business owners asked for more street cleaning.",
    "Summarize this announcement in two sentences: We will open a new office in Lyon next spring, and we are hiring "
    "ten engineers, two designers and a product manager for the team.",
    "Extract every person, place and date in this text as a list: Maria Lopez flew from Madrid to Boston on 4 June "
    "2023 to meet Dr. James Chen, and they travelled together to Toronto on 9 June.",
]


def start(mode: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    key = workdir / "key"
    key.write_text("unused")
    config = workdir / f"router-{mode}.yaml"
    config.write_text(
        "cache: {enabled: false}\n"
        "accounting: {ledger_path: ''}\n"
        "frontier:\n"
        "  models:\n"  # never called: min_mean_logprob -100 keeps every local answer
        '    - {name: claude, provider: anthropic, model_id: x, base_url: "http://127.0.0.1:9", '
        f'api_key_file: "{key}"}}\n'
        f"  escalation: {{streaming: {mode}, min_mean_logprob: -100.0, prefix_tokens: 16}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, re.search(r"http://[\d.]+:\d+", line).group(0)  # type: ignore[union-attr]


async def ask(session: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> tuple[float, float, str, int]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    body |= {"temperature": 0, "stream": True}
    started = time.perf_counter()
    first = None
    chunks = 0
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps(body)) as resp:
        tier = resp.headers.get("x-router-tier", "?")
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"role"' not in line:
                chunks += 1
                first = first or time.perf_counter()
    end = time.perf_counter()
    return (first or end) - started, end - started, tier, chunks


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp())
    servers = {mode: start(mode, workdir) for mode in ("prefix", "buffer")}
    rows: dict[str, list[tuple[float, float, str, int]]] = {mode: [] for mode in servers}
    try:
        async with aiohttp.ClientSession() as session:
            for _, url in servers.values():
                await ask(session, url, "warm up", 4)
            for _ in range(args.rounds):
                for prompt in PROMPTS:
                    for mode, (_, url) in servers.items():
                        rows[mode].append(await ask(session, url, prompt, args.max_tokens))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    ttft = {}
    for mode, samples in rows.items():
        ttft[mode] = statistics.median(r[0] for r in samples) * 1000
        total = statistics.median(r[1] for r in samples) * 1000
        tiers = {r[2] for r in samples}
        chunks = statistics.median(r[3] for r in samples)
        print(
            f"{mode:>7}: TTFT p50 {ttft[mode]:8.1f} ms · whole answer p50 {total:8.1f} ms · "
            f"{chunks:.0f} chunks p50 · tiers {sorted(tiers)}"
        )
    print(f"buffer/prefix TTFT: x{ttft['buffer'] / ttft['prefix']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
