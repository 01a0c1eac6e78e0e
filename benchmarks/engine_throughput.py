"""Local-engine throughput: aggregate output tokens/s and TTFT p50/p99 at 1, 4, 8 and 16 concurrent streams.

Contenders, in the same run, on the same model file, prompts, greedy sampling, max_tokens and thread count:

- `router`: a real `hybrid-router serve` process (batched llama.cpp engine), streamed over HTTP/SSE.
- `llama-server`: llama-cpp-python's own server (`python -m llama_cpp.server --interrupt_requests false`),
  streamed over HTTP/SSE by the same client.
- `bare`: the ceiling: a bare continuous-batching loop on llama.cpp's low-level API in this process; no HTTP, no
  event loop, no detokenisation; the same slots, prompt chunks and greedy sampler as the router.

Each level is a closed loop: C clients send requests back to back until 2*C (at least 4) have finished.
Rounds interleave the contenders so that noise on this shared machine hits all of them alike; the figures are
the per-level medians over rounds (TTFT percentiles over all requests of all rounds).

    python benchmarks/engine_throughput.py                       # router vs llama-server vs bare
    python benchmarks/engine_throughput.py --prefix              # prefix reuse on vs off (in-process engine)
    .venv-vllm/bin/python benchmarks/engine_throughput.py --vllm # router over vLLM vs AsyncLLM directly

Results: benchmarks/RESULTS.md, section "Local engine throughput".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
TOPICS = [
    "a robot learning to paint",
    "a lighthouse keeper",
    "the first day of school",
    "a dragon who is afraid of fire",
    "a city under the sea",
    "a lost umbrella",
    "two rival bakers",
    "a clock that runs backwards",
    "a cat who runs a hotel",
    "the last tree on Mars",
    "a detective who is a dog",
    "a tiny village in the Alps",
    "a pirate who hates the sea",
    "a library at night",
    "a broken violin",
    "an astronaut's garden",
]
PROMPTS = [f"Write a short story about {t}." for t in TOPICS]
SYSTEM = (
    "You are the storyteller of a children's magazine. Write in simple English for readers aged eight to ten. "
    "Every story has a clear beginning, a small problem and a happy ending. Avoid violence, brand names, real "
    "people and sad endings. Use short sentences and concrete images. Give every main character a name. "
    "Never use lists or headings; write flowing prose. Keep it under two hundred words."
)


@dataclass
class Record:
    ttft: float
    tokens: int


@dataclass
class Level:
    wall: float
    records: list[Record] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return sum(r.tokens for r in self.records) / self.wall


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def requests_for(concurrency: int) -> int:
    return max(4, 2 * concurrency)


def prompt(tag: str, i: int) -> str:
    # Unique per round, level and request (the same for every contender): no response cache can answer it.
    return f"{PROMPTS[i % len(PROMPTS)]} (Story {tag}.{i}.)"


# -- HTTP contenders -----------------------------------------------------------------------------------------


async def _one(session, url: str, model: str, prompt: str, max_tokens: int, system: str | None) -> Record:  # type: ignore[no-untyped-def]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = None
    chunks = 0
    usage = None
    headers = {"content-type": "application/json", "cache-control": "no-cache, no-store"}
    async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
        async for line in resp.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            obj = orjson.loads(line[6:])
            if obj.get("usage"):
                usage = obj["usage"]["completion_tokens"]
            for choice in obj.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    return Record((first or end) - start, usage if usage is not None else chunks)


async def http_level(
    base_url: str, model: str, concurrency: int, max_tokens: int, tag: str, system: str | None = None
) -> Level:
    import aiohttp

    todo = iter(range(requests_for(concurrency)))
    records: list[Record] = []
    url = base_url + "/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), timeout=timeout) as session:

        async def worker() -> None:
            for i in todo:
                records.append(await _one(session, url, model, prompt(tag, i), max_tokens, system))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return Level(wall, records)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, within: float = 180) -> None:  # type: ignore[type-arg]
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready within {within} s")


@contextlib.contextmanager
def router_server(engine_yaml: str) -> Iterator[str]:
    """`hybrid-router serve` with one model (the YAML of its entry), on a free port."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        # The engine's serving path only: no response cache or embedding model (they have their own benchmarks;
        # unique prompts would miss the cache anyway) and no cost ledger writes.
        f.write(
            f"server:\n  port: {port}\n  log_level: warning\n"
            "cache:\n  enabled: false\nembeddings:\n  enabled: false\naccounting:\n  ledger_path: ''\n"
            f"models:\n{engine_yaml}"
        )
        config = f.name
    cmd = [sys.executable, "-m", "router.cli", "serve", "--config", config, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, within=600)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        os.unlink(config)


@contextlib.contextmanager
def llama_server(model: str, threads: int) -> Iterator[str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", model, "--n_ctx", "2048",
        "--n_threads", str(threads), "--n_threads_batch", str(threads), "--interrupt_requests", "false",
        "--verbose", "false", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


# -- the bare loop (the ceiling) -----------------------------------------------------------------------------


class BareLoop:
    """Continuous batching with nothing around it: prompt chunks and one token per running sequence per
    llama_decode, greedy sampling, EOS or max_tokens ends a sequence and the next prompt takes its slot."""

    def __init__(self, model_path: str, slots: int, threads: int, n_ctx: int = 2048) -> None:
        import llama_cpp as L
        from llama_cpp._logger import set_verbose

        from router.engines.chat_template import ChatTemplate

        set_verbose(False)
        L.llama_backend_init()
        self.L = L
        self.model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
        self.vocab = L.llama_model_get_vocab(self.model)
        p = L.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = n_ctx * slots, 512, 512, slots
        p.kv_unified, p.n_threads, p.n_threads_batch, p.no_perf = False, threads, threads, True
        self.ctx = L.llama_init_from_model(self.model, p)
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(512, 0, 1)
        self.slots = slots
        raw = L.llama_model_chat_template(self.model, None)
        self.template = ChatTemplate(raw.decode())

    def tokens(self, prompt: str, system: str | None) -> list[int]:
        from router.types import Message

        messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
        data = self.template.render(messages).encode()
        buf = (self.L.llama_token * (len(data) + 8))()
        n = self.L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        return buf[:n]

    def run(self, concurrency: int, max_tokens: int, tag: str, system: str | None = None) -> Level:
        L, b = self.L, self.batch
        greedy = L.llama_sampler_init_greedy()
        queue = [self.tokens(prompt(tag, i), system) for i in range(requests_for(concurrency))]
        queue.reverse()
        free = list(range(concurrency - 1, -1, -1))
        # seq -> [todo tokens, pos, last token, produced, started_at, first_token_at]
        running: dict[int, list] = {}
        records: list[Record] = []
        start = time.perf_counter()
        while queue or running:
            while queue and free:
                running[free.pop()] = [queue.pop(), 0, -1, 0, time.perf_counter(), None]
            budget = 512 - sum(1 for s in running.values() if not s[0])
            n = 0
            outs: list[tuple[int, int]] = []
            for seq in sorted(running):
                s = running[seq]
                if s[0]:
                    take = min(budget, len(s[0]))
                    if not take:
                        continue
                    budget -= take
                    chunk, s[0] = s[0][:take], s[0][take:]
                    for t in chunk:
                        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = t, s[1], 1, 0
                        b.seq_id[n][0] = seq
                        n += 1
                        s[1] += 1
                    if not s[0]:
                        b.logits[n - 1] = 1
                        outs.append((seq, n - 1))
                else:
                    b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = s[2], s[1], 1, 1
                    b.seq_id[n][0] = seq
                    outs.append((seq, n))
                    n += 1
                    s[1] += 1
            b.n_tokens = n
            if L.llama_decode(self.ctx, b) != 0:
                raise RuntimeError("llama_decode failed")
            for seq, idx in outs:
                s = running[seq]
                tok = L.llama_sampler_sample(greedy, self.ctx, idx)
                if s[5] is None:
                    s[5] = time.perf_counter()
                eog = L.llama_vocab_is_eog(self.vocab, tok)
                if not eog:
                    s[2] = tok
                    s[3] += 1
                if eog or s[3] >= max_tokens:
                    records.append(Record(s[5] - s[4], s[3]))
                    L.llama_memory_seq_rm(self.mem, seq, -1, -1)
                    del running[seq]
                    free.append(seq)
                    free.sort(reverse=True)
        L.llama_sampler_free(greedy)
        return Level(time.perf_counter() - start, records)


# -- reporting -----------------------------------------------------------------------------------------------


def summarise(results: dict[str, dict[int, list[Level]]]) -> list[dict]:
    rows = []
    for name, by_level in results.items():
        for c, levels in sorted(by_level.items()):
            ttfts = [r.ttft for lv in levels for r in lv.records]
            rows.append(
                {
                    "contender": name,
                    "streams": c,
                    "tok_s": statistics.median(lv.tok_s for lv in levels),
                    "tok_s_all": [round(lv.tok_s, 1) for lv in levels],
                    "ttft_p50_ms": 1000 * pct(ttfts, 0.5),
                    "ttft_p99_ms": 1000 * pct(ttfts, 0.99),
                    "requests": len(ttfts),
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'contender':<22}{'streams':>8}{'tok/s':>9}{'TTFT p50':>11}{'TTFT p99':>11}  per round")
    for r in rows:
        print(
            f"{r['contender']:<22}{r['streams']:>8}{r['tok_s']:>9.1f}{r['ttft_p50_ms']:>9.0f}ms"
            f"{r['ttft_p99_ms']:>9.0f}ms  {r['tok_s_all']}"
        )


def print_ratios(rows: list[dict], a: str, b: str) -> None:
    by = {(r["contender"], r["streams"]): r["tok_s"] for r in rows}
    for (name, c), v in sorted(by.items(), key=lambda kv: kv[0][1]):
        if name == a and (b, c) in by:
            print(f"  {a} / {b} at {c:>2} streams: {v / by[(b, c)]:.2f}x")


def save(rows: list[dict], name: str) -> None:
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


# -- the three benchmarks ------------------------------------------------------------------------------------


def bench_engines(args: argparse.Namespace) -> None:
    from router.engines.embedded import default_chat_model

    model = str(default_chat_model())
    levels = args.concurrency
    slots = max(levels)
    entry = (
        f"  - name: bench\n    engine: llamacpp\n    n_ctx: 2048\n    n_parallel: {slots}\n"
        f"    n_threads: {args.threads}\n    max_queue_requests: 64\n"
        f"    prefix_reuse: {'true' if args.prefix_reuse else 'false'}\n"
    )
    results: dict[str, dict[int, list[Level]]] = {"router": {}, "llama-server": {}, "bare": {}}
    bare = BareLoop(model, slots, args.threads)
    with router_server(entry) as router_url, llama_server(model, args.threads) as server_url:
        for rnd in range(args.rounds):
            for c in levels:
                tag = f"{rnd}.{c}"
                for name in ("router", "llama-server", "bare"):
                    if name == "router":
                        level = asyncio.run(http_level(router_url, "bench", c, args.max_tokens, tag))
                    elif name == "llama-server":
                        level = asyncio.run(http_level(server_url, "bench", c, args.max_tokens, tag))
                    else:
                        level = bare.run(c, args.max_tokens, tag)
                    results[name].setdefault(c, []).append(level)
                    print(f"round {rnd + 1} {name:<13} {c:>2} streams: {level.tok_s:6.1f} tok/s", flush=True)
    rows = summarise(results)
    print()
    print_table(rows)
    print_ratios(rows, "router", "llama-server")
    print_ratios(rows, "router", "bare")
    save(rows, "engine_throughput")


def bench_prefix(args: argparse.Namespace) -> None:
    """Prefix reuse on vs off, in-process (no HTTP), every request sharing one ~100-token system prompt."""
    from router.config import ModelSettings
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine
    from router.types import ChatRequest, Message, SamplingParams

    async def level(engine: BatchedLlamaCppEngine, c: int, tag: str) -> Level:
        todo = iter(range(requests_for(c)))
        records: list[Record] = []

        async def worker() -> None:
            for i in todo:
                req = ChatRequest(
                    model="m",
                    messages=[*system, Message("user", prompt(tag, i))],
                    sampling=SamplingParams(temperature=0, max_tokens=args.max_tokens),
                )
                t0 = time.perf_counter()
                first = None
                tokens = 0
                async for chunk in engine.generate(req):
                    if chunk.text and first is None:
                        first = time.perf_counter()
                    if chunk.usage:
                        tokens = chunk.usage.completion_tokens
                records.append(Record((first or time.perf_counter()) - t0, tokens))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        return Level(time.perf_counter() - start, records)

    # --no-system: only the chat template's own preamble is shared (SmolLM2 injects a default system prompt).
    system = [] if args.no_system else [Message("system", SYSTEM)]

    async def main() -> dict[str, dict[int, list[Level]]]:
        engines = {}
        for name, reuse in (("prefix-off", False), ("prefix-on", True)):
            s = ModelSettings(name=name, n_parallel=max(args.concurrency), n_threads=args.threads, prefix_reuse=reuse)
            engines[name] = BatchedLlamaCppEngine(s)
            await engines[name].start()
        probe = ChatRequest(model="m", messages=[*system, Message("user", "")])
        print("prompt tokens before the user's text:", engines["prefix-on"].count_prompt_tokens(probe))
        results: dict[str, dict[int, list[Level]]] = {n: {} for n in engines}
        for rnd in range(args.rounds):
            for c in args.concurrency:
                for name, engine in engines.items():
                    lv = await level(engine, c, f"{rnd}.{c}")
                    results[name].setdefault(c, []).append(lv)
                    print(f"round {rnd + 1} {name:<11} {c:>2} streams: {lv.tok_s:6.1f} tok/s", flush=True)
        for name, engine in engines.items():
            st = engine.stats
            print(f"{name}: prompt tokens computed {st.prompt_tokens_computed}, prefix hits {st.prefix_hits}")
            await engine.aclose()
        return results

    rows = summarise(asyncio.run(main()))
    print()
    print_table(rows)
    print_ratios(rows, "prefix-on", "prefix-off")
    save(rows, "prefix_reuse")


def bench_vllm(args: argparse.Namespace) -> None:
    """The router over in-process vLLM vs vLLM's AsyncLLM driven directly, same prompts, same concurrency."""
    model = args.vllm_model
    c = args.vllm_streams
    entry = (
        f"  - name: bench\n    engine: vllm\n    path: {model}\n    dtype: bfloat16\n    n_ctx: 2048\n"
        f"    n_parallel: {c}\n    max_queue_requests: 64\n"
    )
    results: dict[str, dict[int, list[Level]]] = {"router+vllm": {}, "AsyncLLM": {}}
    for rnd in range(args.rounds):
        with router_server(entry) as url:
            asyncio.run(http_level(url, "bench", c, args.max_tokens, f"w{rnd}"))  # warm-up
            lv = asyncio.run(http_level(url, "bench", c, args.max_tokens, f"{rnd}"))
        results["router+vllm"].setdefault(c, []).append(lv)
        print(f"round {rnd + 1} router+vllm {c} streams: {lv.tok_s:6.1f} tok/s", flush=True)
        lv = _asyncllm_direct(model, c, args.max_tokens, rnd)
        results["AsyncLLM"].setdefault(c, []).append(lv)
        print(f"round {rnd + 1} AsyncLLM    {c} streams: {lv.tok_s:6.1f} tok/s", flush=True)
    rows = summarise(results)
    print()
    print_table(rows)
    print_ratios(rows, "router+vllm", "AsyncLLM")
    save(rows, "vllm_direct")


def _asyncllm_direct(model: str, c: int, max_tokens: int, rnd: int) -> Level:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    async def main() -> Level:
        engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(model=model, dtype="bfloat16", enforce_eager=True, max_model_len=2048, max_num_seqs=c)
        )
        tokenizer = engine.tokenizer if hasattr(engine, "tokenizer") else await engine.get_tokenizer()

        async def one(i: int, content: str) -> Record:
            text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True)  # fmt: skip
            params = SamplingParams(temperature=0, max_tokens=max_tokens, output_kind=RequestOutputKind.DELTA)
            start = time.perf_counter()
            first = None
            tokens = 0
            async for out in engine.generate(text, params, request_id=f"r{i}-{time.monotonic_ns()}"):
                delta = out.outputs[0]
                if delta.text and first is None:
                    first = time.perf_counter()
                tokens += len(delta.token_ids)
            return Record((first or time.perf_counter()) - start, tokens)

        async def level(tag: str) -> Level:
            todo = iter(range(requests_for(c)))
            records: list[Record] = []

            async def worker() -> None:
                for i in todo:
                    records.append(await one(i, prompt(tag, i)))

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(c)))
            return Level(time.perf_counter() - start, records)

        try:
            await level(f"w{rnd}")  # warm-up, as for the router
            return await level(f"{rnd}")
        finally:
            engine.shutdown()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads, all sides")
    parser.add_argument("--prefix", action="store_true", help="prefix reuse on vs off instead")
    parser.add_argument("--no-system", action="store_true", help="--prefix without a system prompt")
    parser.add_argument("--prefix-reuse", action="store_true", help="the router with prefix_reuse: true")
    parser.add_argument("--vllm", action="store_true", help="router over vLLM vs AsyncLLM instead")
    parser.add_argument(
        "--vllm-model", default=str(ROOT / ".venv-vllm" / "models" / "smollm2-135m-instruct"), help="HF checkpoint"
    )
    parser.add_argument("--vllm-streams", type=int, default=8)
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} threads={args.threads} max_tokens={args.max_tokens} rounds={args.rounds}")
    if args.vllm:
        bench_vllm(args)
    elif args.prefix:
        bench_prefix(args)
    else:
        bench_engines(args)


if __name__ == "__main__":  # vLLM spawns processes: the guard keeps them from re-running the benchmark
    main()
