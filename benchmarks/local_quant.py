"""Local tier: what the weight format costs per step, as the router's engine runs it (issue 19, local p99).

The soak's local latency is queueing: on one llama.cpp thread the engine barely gains from batching with the
shipped Q4_1 weights (no batched kernel for Q4_1 in this CPU build; see RESULTS.md "Local engine throughput").
This measures the router's own engine (`BatchedLlamaCppEngine`, in process, same settings as the router: 1 thread,
8 slots, prefix reuse) on the shipped file and on requantisations of it that llama.cpp's tinyBLAS (LLAMAFILE)
kernels can batch: Q8_0 and F16 (both hold every Q4_1 weight almost exactly) and Q4_0 (lossy: requantised).

    python benchmarks/local_quant.py                         # Q4_1 vs Q8_0 vs F16 vs Q4_0, 1 / 4 / 8 streams
    python benchmarks/local_quant.py --formats Q4_1,Q8_0 --concurrency 8 --rounds 3

Closed loop of C clients until 2·C requests (≥ 4) finished, the soak's local prompts (unique per request, so no
prefix beyond the template's is shared), greedy, max_tokens 24; contenders interleaved per round so that noise on
this shared machine hits all alike; tok/s is the median over rounds. Then the answers: each format's greedy
answers to 24 prompts, compared with the shipped file's (identical answers, and tokens in common).

The requantised files are written once to ~/.cache/hybrid-router/models/ (never into the repository).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.soak import FILLERS, LOCAL_PROMPTS  # noqa: E402
from router.config import ModelSettings  # noqa: E402
from router.engines.embedded import default_chat_model  # noqa: E402
from router.engines.llamacpp_batched import BatchedLlamaCppEngine  # noqa: E402
from router.types import ChatRequest, Message, SamplingParams  # noqa: E402

CACHE = Path.home() / ".cache" / "hybrid-router" / "models"


def requantised(fmt: str) -> str:
    """The shipped Q4_1 file, or its requantisation to `fmt` (made once, with llama.cpp's own quantiser)."""
    shipped = str(default_chat_model())
    if fmt == "Q4_1":
        return shipped
    import llama_cpp as L

    out = CACHE / Path(shipped).name.replace("Q4_1", f"{fmt}.from-Q4_1")
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        params = L.llama_model_quantize_default_params()
        params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{fmt}")
        params.allow_requantize = True
        params.nthread = 1
        tmp = out.with_suffix(".part")
        if L.llama_model_quantize(shipped.encode(), str(tmp).encode(), params) != 0:
            raise SystemExit(f"requantising to {fmt} failed")
        tmp.rename(out)
    return str(out)


def prompts(tag: str, n: int) -> list[str]:
    return [
        LOCAL_PROMPTS[i % len(LOCAL_PROMPTS)].format(x=FILLERS[(i // len(LOCAL_PROMPTS)) % len(FILLERS)])
        + f" ({tag}.{i})"
        for i in range(n)
    ]


def request(text: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message("user", text)],
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
    )


async def level(engine: BatchedLlamaCppEngine, c: int, tag: str, max_tokens: int) -> tuple[float, float]:
    """Output tokens per wall second and per CPU second (this process: the engine thread and the loop) of C
    closed-loop clients. Per CPU second is what other processes on the machine cannot take away."""
    todo = iter(prompts(tag, max(4, 2 * c)))
    produced = 0

    async def worker() -> None:
        nonlocal produced
        for text in todo:
            async for chunk in engine.generate(request(text, max_tokens)):
                if chunk.usage:
                    produced += chunk.usage.completion_tokens

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(c)))
    return produced / (time.perf_counter() - start), produced / (time.process_time() - cpu)


async def answers(engine: BatchedLlamaCppEngine, texts: list[str], max_tokens: int) -> list[list[str]]:
    out = []
    for text in texts:
        parts = [chunk.text async for chunk in engine.generate(request(text, max_tokens)) if chunk.text]
        out.append(parts)
    return out


async def main(args: argparse.Namespace, files: dict[str, tuple[str, float]]) -> None:
    formats = list(files)
    engines = {}
    for fmt, (path, size) in files.items():
        settings = ModelSettings(
            name=fmt, path=path, n_threads=1, n_parallel=max(args.concurrency), n_ctx=512, isolation="inprocess"
        )
        engines[fmt] = BatchedLlamaCppEngine(settings)
        await engines[fmt].start()
        print(f"{fmt}: {path} ({size:.0f} MiB)", flush=True)
    rates: dict[tuple[str, int], list[float]] = {}
    per_cpu: dict[tuple[str, int], list[float]] = {}
    for rnd in range(args.rounds):
        for c in args.concurrency:
            for fmt, engine in engines.items():
                rate, cpu_rate = await level(engine, c, f"{rnd}.{c}", args.max_tokens)
                rates.setdefault((fmt, c), []).append(rate)
                per_cpu.setdefault((fmt, c), []).append(cpu_rate)
                print(
                    f"round {rnd + 1} {fmt:<5} {c:>2} streams: {rate:6.1f} tok/s, {cpu_rate:6.1f} tok/CPU-s", flush=True
                )
    base = formats[0]
    for title, table in (("tok/s (wall)", rates), ("tok per CPU second", per_cpu)):
        print(f"\n| format | {' | '.join(f'{c} streams, {title}' for c in args.concurrency)} | vs {base} |")
        print(f"|---|{'---:|' * len(args.concurrency)}---|")
        for fmt in formats:
            med = [statistics.median(table[(fmt, c)]) for c in args.concurrency]
            ratio = [m / statistics.median(table[(base, c)]) for m, c in zip(med, args.concurrency, strict=True)]
            cells = " | ".join(f"{m:.1f}" for m in med)
            print(f"| {fmt} | {cells} | {' / '.join(f'{r:.2f}x' for r in ratio)} |")
    texts = prompts("quality", 24)
    reference = await answers(engines[base], texts, args.max_tokens)
    print()
    for fmt in formats[1:]:
        got = await answers(engines[fmt], texts, args.max_tokens)
        same = sum(a == b for a, b in zip(got, reference, strict=True))
        common = sum(
            next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            for a, b in zip(got, reference, strict=True)
        )
        total = sum(len(b) for b in reference)
        print(f"{fmt} vs {base}: {same}/24 greedy answers identical, {common}/{total} leading tokens in common")
    for engine in engines.values():
        await engine.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--formats", default="Q4_1,Q8_0,F16,Q4_0")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    files = {}
    for fmt in args.formats.split(","):
        path = requantised(fmt)
        files[fmt] = (path, Path(path).stat().st_size / 2**20)
    asyncio.run(main(args, files))
