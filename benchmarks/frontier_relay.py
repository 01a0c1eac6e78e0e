"""Streaming relay overhead of the frontier tier: TTFT and inter-token gaps through the router vs straight to
the upstream, in the same run (interleaved), for both wire formats.

The upstream is the raw-asyncio mock (router/bench/mock.py) pacing its deltas; the router runs as a real
`hybrid-router serve` process with two frontier models pointed at it (Anthropic through the official SDK,
OpenAI-compatible through aiohttp). The client reads SSE bytes with aiohttp and timestamps every content delta.

    python benchmarks/frontier_relay.py [--requests 200] [--chunks 16] [--interval-ms 2] [--latency-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, list[float]]:
    start = time.perf_counter()
    arrivals: list[float] = []
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if (line.startswith(b'data: {"id"') and b'"content":"' in line and b'"content":""' not in line) or (
                b'"text_delta"' in line
            ):
                arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return (arrivals[0] - start if arrivals else float("nan")), gaps, len(arrivals)  # type: ignore[return-value]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    mock = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is measured
        [
            sys.executable,
            "-m",
            "router.bench.mock",
            "--port",
            "0",
            "--chunks",
            str(args.chunks),
            "--chunk-interval-ms",
            str(args.interval_ms),
            "--latency-ms",
            str(args.latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    mock_url = re.search(r"http://[\d.]+:\d+", mock.stdout.readline()).group(0)  # type: ignore[union-attr]
    (tmp / "key").write_text("sk-bench")
    (tmp / "router.yaml").write_text(
        "cache: {enabled: false}\n"  # every request must reach the upstream
        "frontier:\n  models:\n"
        f'    - {{name: claude, provider: anthropic, model_id: mock, base_url: "{mock_url}", '
        f'api_key_file: "{tmp}/key"}}\n'
        f'    - {{name: gpt, provider: openai, model_id: mock, base_url: "{mock_url}/v1", api_key_file: "{tmp}/key"}}\n'
    )
    router = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--config", str(tmp / "router.yaml")],
        stdout=subprocess.PIPE,
        text=True,
    )
    router_url = re.search(r"http://[\d.]+:\d+", router.stdout.readline()).group(0)  # type: ignore[union-attr]
    messages = [{"role": "user", "content": "Plan a migration."}]
    openai_body = orjson.dumps({"model": "mock", "messages": messages, "stream": True, "max_tokens": 64})
    routed_openai = orjson.dumps({"model": "gpt", "messages": messages, "stream": True, "max_tokens": 64})
    anthropic_body = orjson.dumps({"model": "mock", "messages": messages, "stream": True, "max_tokens": 64})
    routed_anthropic = orjson.dumps({"model": "claude", "messages": messages, "stream": True, "max_tokens": 64})
    ah = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    oh = {"authorization": "Bearer k", "content-type": "application/json"}
    paths = {
        "openai direct": (mock_url + "/v1/chat/completions", openai_body, oh),
        "openai via router": (router_url + "/v1/chat/completions", routed_openai, oh),
        "anthropic direct": (mock_url + "/v1/messages", anthropic_body, ah),
        "anthropic via router": (router_url + "/v1/messages", routed_anthropic, ah),
    }
    results: dict[str, tuple[list[float], list[float], list[int]]] = {k: ([], [], []) for k in paths}
    try:
        async with aiohttp.ClientSession() as session:
            for url, body, headers in paths.values():  # warm-up: connections, SDK clients
                for _ in range(5):
                    await one(session, url, body, headers)
            for _ in range(args.requests):
                for name, (url, body, headers) in paths.items():
                    ttft, gaps, n = await one(session, url, body, headers)
                    results[name][0].append(ttft)
                    results[name][1].extend(gaps)
                    results[name][2].append(n)
    finally:
        router.terminate()
        mock.terminate()
    print(
        f"{args.requests} streams per path, c=1, {args.chunks} deltas {args.interval_ms} ms apart, "
        f"{args.latency_ms} ms upstream latency"
    )
    print(f"{'path':>22} {'TTFT p50':>10} {'TTFT p99':>10} {'gap p50':>9} {'gap p99':>9} {'deltas/stream':>14}")
    for name, (ttfts, gaps, counts) in results.items():
        print(
            f"{name:>22} {pct(ttfts, 0.5) * 1e3:8.3f}ms {pct(ttfts, 0.99) * 1e3:8.3f}ms "
            f"{pct(gaps, 0.5) * 1e3:7.3f}ms {pct(gaps, 0.99) * 1e3:7.3f}ms {statistics.mean(counts):14.1f}"
        )
    for api in ("openai", "anthropic"):
        d, r = results[f"{api} direct"], results[f"{api} via router"]
        added = (pct(r[0], 0.5) - pct(d[0], 0.5)) * 1e3
        held = sum(1 for a, b in zip(d[2], r[2], strict=True) if a != b)
        print(
            f"{api}: added TTFT p50 {added:+.3f} ms; added gap p50 {(pct(r[1], 0.5) - pct(d[1], 0.5)) * 1e3:+.3f} ms; "
            f"streams whose delta count differs from direct: {held}"
        )


if __name__ == "__main__":
    asyncio.run(main())
