"""Soak: mixed local / frontier / fault traffic, open loop, against a real router process for N minutes.

    python benchmarks/soak.py --minutes 30 --rate 5            # the issue-19 figure
    python benchmarks/soak.py --minutes 3 --tracemalloc         # where the Python heap grows (slower server)

The router is `hybrid-router serve` in its own process (real SmolLM2 through llama.cpp, real MiniLM embedder and
semantic cache, auth on with two tenants); the frontier is the fake upstream of tests/fakes/frontier.py on
127.0.0.1 in this process. Arrivals are Poisson at `--rate`; each request picks a kind (local, frontier, auto,
or one of the faults), an ingress (OpenAI or Anthropic wire format) and stream or not, and every kind says which
outcome is "as designed" (an answer, a fallback, a throttle with Retry-After, an in-band error after the first
byte). Every `--sample-s` seconds the router's RSS (/proc) and /metrics are read. At the end it prints:

    the RSS slope over the last two thirds (MiB/min, least squares), local and frontier latency percentiles,
    event-loop lag p99 (router_event_loop_lag_seconds), engine steps/s, outcomes by kind (and any not as
    designed), and the gauges after the traffic stopped (in flight, engine slots, queue: all must be 0).

Everything measured is written to OUT/soak.json (default benchmarks/out/soak-<UTC time>/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router.accounting.keys import append_key, new_key  # noqa: E402
from router.bench.stats import percentile  # noqa: E402
from router.config import DEFAULT_MODEL_NAME  # noqa: E402
from tests.fakes.frontier import FakeFrontier  # noqa: E402

LOCAL_PROMPTS = [
    "Classify the sentiment of this review as positive or negative: {x}",
    "Extract the city name from: {x}",
    "Summarize in five words: {x}",
    "Is this a question or a statement? {x}",
]
FILLERS = [
    "the delivery came two days late but the box was intact",
    "I moved from Lyon to Porto last spring for work",
    "our quarterly revenue grew while costs stayed flat",
    "the new phone battery lasts a full day of heavy use",
    "can the meeting move to Thursday afternoon",
    "the hotel in Kyoto had a quiet garden and thin walls",
]
FRONTIER_PROMPT = "Plan the migration of our billing system, step {x}"


@dataclass(frozen=True)
class Kind:
    """A kind of request and what its outcome must be."""

    name: str
    model: str
    weight: float
    expect: str  # ok | ok-fallback | throttled | inband-or-fallback


# The fault models of the config below: each fault of the fake upstream with the outcome it must produce.
FAULTS = [
    Kind("fault-500-fallback", "f-500", 1, "ok-fallback"),  # 5xx: retried, then the fallback answers
    Kind("fault-429", "f-429", 1, "throttled"),  # no fallback: the client sees 429 + Retry-After
    Kind("fault-529", "f-529", 1, "throttled"),  # no fallback: 529 (Anthropic) / 503 (OpenAI) + Retry-After
    Kind("fault-midstream", "f-mid", 1, "inband-or-fallback"),  # stream: in-band error; whole: fallback
    Kind("fault-cut", "f-cut", 1, "inband-or-fallback"),
    Kind("fault-hang", "f-hang", 1, "ok-fallback"),  # no first token in time: the fallback answers
]


def router_config(fake: FakeFrontier, tmp: Path, keys: Path, args: argparse.Namespace) -> str:
    key = tmp / "frontier-key"
    key.write_text("sk-soak\n")
    anth, oai = fake.url, fake.url + "/v1"

    def model(name: str, provider: str, behaviour: str, **extra: Any) -> str:
        base = anth if provider == "anthropic" else oai
        fields = {"name": name, "provider": provider, "model_id": behaviour, "base_url": base}
        fields |= {"api_key_file": str(key), "input_price_per_mtok": 3.0, "output_price_per_mtok": 15.0, **extra}
        return "    - " + orjson.dumps(fields).decode()

    # n_threads: see RESULTS.md (issue 19): llama.cpp threads spin at a barrier every step, so one thread per core
    # with anything else running on the machine makes each step wait for the scheduler. --local-format: the
    # shipped Q4_1 weights requantised (benchmarks/local_quant.py), for kernels that batch on this CPU.
    local: dict[str, Any] = {"name": DEFAULT_MODEL_NAME}
    if args.n_threads:
        local["n_threads"] = args.n_threads
    if args.local_format != "Q4_1":
        from benchmarks.local_quant import requantised

        local["path"] = requantised(args.local_format)
    return "\n".join(
        [
            "server: {log_level: warning}",
            f"models: [{orjson.dumps(local).decode()}]" if len(local) > 1 else "",
            f"cache: {{max_entries: {args.cache_entries}}}",
            f"auth: {{enabled: true, keys_file: {orjson.dumps(str(keys)).decode()}}}",
            "tenants: [{name: acme}, {name: globex}, {name: ops, admin: true}]",
            f"accounting: {{ledger_path: {orjson.dumps(str(tmp / 'ledger.sqlite3')).decode()}}}",
            "frontier:",
            "  resilience: {max_retries: 1, backoff_base_s: 0.05, backoff_max_s: 1.0}",
            "  models:",
            model("claude", "anthropic", "ok"),
            model("gpt", "openai", "ok"),
            model("f-500", "openai", "error_500", fallbacks=["claude"]),
            model("f-429", "anthropic", "error_429", fallback_to_local=False),
            model("f-529", "anthropic", "error_529", fallback_to_local=False),
            model("f-mid", "anthropic", "stream_error_after_2", fallbacks=["gpt"]),
            model("f-cut", "openai", "cut_stream_2", fallbacks=["claude"]),
            model("f-hang", "anthropic", "hang", first_token_timeout_s=0.5, fallbacks=["gpt"]),
        ]
    )


@dataclass
class Result:
    kind: str
    ingress: str
    stream: bool
    start: float  # seconds since the traffic began
    latency: float
    status: int
    outcome: str  # ok | ok-fallback | throttled | inband | error
    as_designed: bool
    detail: str = ""
    # Where a local answer's time went: the first text delta (streams only: queue wait + prompt), the answer's
    # tokens (usage), and whether the cache answered it.
    ttft: float | None = None
    tokens: int | None = None
    cache: str = ""
    tier: str = ""


@dataclass
class Sample:
    t: float
    rss_mib: float
    metrics: dict[str, float] = field(default_factory=dict)
    # Who had the CPU: the machine's 1-minute load average, and CPU seconds used so far by the router's main
    # process, its engine worker (and any other child), and this process (load generator + fake frontier).
    load1: float = float("nan")
    cpu_s: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return (sxy / sxx) * 60 if sxx else float("nan")


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float:
    """Prometheus-style quantile from cumulative buckets (linear inside a bucket)."""
    buckets = []
    for key, value in metrics.items():
        m = re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', key)
        if m:
            buckets.append((float(m.group(1)), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return buckets[-1][0]


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.results: list[Result] = []
        self.samples: list[Sample] = []
        share = args.fault_share
        base = [
            Kind("local", DEFAULT_MODEL_NAME, args.local_share, "ok"),
            Kind("frontier", "claude", (0.9 - args.local_share) / 2, "ok"),
            Kind("frontier", "gpt", (0.9 - args.local_share) / 2, "ok"),
            Kind("auto", "auto", 0.1, "ok"),
        ]
        total = sum(k.weight for k in base)
        self.kinds = [Kind(k.name, k.model, k.weight * (1 - share) / total, k.expect) for k in base]
        self.kinds += [Kind(f.name, f.model, share / len(FAULTS), f.expect) for f in FAULTS]

    # -- one request -----------------------------------------------------------------------------------------

    def body(self, kind: Kind, ingress: str, stream: bool) -> dict[str, Any]:
        if kind.name in ("local", "auto"):
            # A few hundred distinct prompts: repeats exercise the exact and semantic cache, most are misses.
            text = self.rng.choice(LOCAL_PROMPTS).format(x=self.rng.choice(FILLERS)) + f" (#{self.rng.randrange(60)})"
        else:
            text = FRONTIER_PROMPT.format(x=self.rng.randrange(10**6))
        body: dict[str, Any] = {
            "model": kind.model,
            "max_tokens": self.rng.choice((16, 24, 32)),
            "temperature": 0.0,
            "stream": stream,
        }
        body["messages"] = [{"role": "user", "content": text}]
        if ingress == "openai" and stream:
            body["stream_options"] = {"include_usage": True}  # the answer's token count, as Anthropic streams give
        return body

    async def one(self, session: aiohttp.ClientSession, kind: Kind, t0: float) -> None:
        ingress = self.rng.choice(("openai", "anthropic"))
        stream = self.rng.random() < 0.5
        path = "/v1/chat/completions" if ingress == "openai" else "/v1/messages"
        key = self.rng.choice(self.tenant_keys)
        headers = {"authorization": f"Bearer {key}"} if ingress == "openai" else {"x-api-key": key}
        body = orjson.dumps(self.body(kind, ingress, stream))
        start = time.perf_counter()
        status, outcome, detail = 0, "error", ""
        ttft: float | None = None
        tokens: int | None = None
        cache = tier = ""
        try:
            async with session.post(self.base + path, data=body, headers=headers) as resp:
                status = resp.status
                cache, tier = resp.headers.get("x-router-cache", ""), resp.headers.get("x-router-tier", "")
                if stream and status == 200:
                    parts = []
                    async for block in resp.content.iter_any():
                        if ttft is None and _TEXT_DELTA.search(block):
                            ttft = time.perf_counter() - start
                        parts.append(block)
                    raw = b"".join(parts)
                else:
                    raw = await resp.read()
                if status == 200:
                    tokens = _completion_tokens(raw)
                    inband = (b'"error"' in raw) if stream else False
                    fallback = "x-router-fallback" in resp.headers
                    outcome = "inband" if inband else ("ok-fallback" if fallback else "ok")
                    if not stream:
                        orjson.loads(raw)  # a whole answer must be one JSON body
                elif status in (429, 503, 529):
                    outcome = "throttled" if resp.headers.get("Retry-After") else "error"
                    if outcome == "throttled" and b"local model is at capacity" in raw:
                        outcome = "shed"  # the engine's queue bound: refused at once, with Retry-After
                    detail = raw[:200].decode(errors="replace")
                else:
                    detail = raw[:200].decode(errors="replace")
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - start
        self.results.append(
            Result(
                kind.name,
                ingress,
                stream,
                start - t0,
                latency,
                status,
                outcome,
                _designed(kind, outcome),
                detail,
                ttft,
                tokens,
                cache,
                tier,
            )
        )

    # -- the run ---------------------------------------------------------------------------------------------

    async def scrape(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(self.base + "/metrics", headers={"authorization": f"Bearer {self.admin_key}"}) as r:
            return parse_metrics(await r.text())

    async def sampler(self, session: aiohttp.ClientSession, t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                metrics = await self.scrape(session)
            except aiohttp.ClientError:
                metrics = {}
            pid = self.proc.pid
            cpu = {
                "router_main": cpu_seconds(pid),
                "engine_worker": sum(cpu_seconds(k) for k in children(pid)),
                "load_generator": sum(os.times()[:2]),
            }
            self.samples.append(Sample(time.perf_counter() - t0, rss_mib(pid), metrics, load1(), cpu))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.sample_s)

    async def debug_memory(self, session: aiohttp.ClientSession, reset: bool = False) -> dict[str, Any] | None:
        if not self.args.tracemalloc:
            return None
        q = "?top=25" + ("&reset=1" if reset else "")
        async with session.get(
            self.base + "/debug/memory" + q, headers={"authorization": f"Bearer {self.admin_key}"}
        ) as r:
            return orjson.loads(await r.read())

    async def traffic(self) -> dict[str, Any]:
        conn = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=self.args.request_timeout_s)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            await self.warm_up(session)
            memory_start = await self.debug_memory(session, reset=True)
            stop = asyncio.Event()
            t0 = time.perf_counter()
            sampler = asyncio.create_task(self.sampler(session, t0, stop))
            tasks: set[asyncio.Task[None]] = set()
            end = t0 + self.args.minutes * 60
            next_at = t0
            weights = [k.weight for k in self.kinds]
            last_print = t0
            while True:
                next_at += self.rng.expovariate(self.args.rate)
                if next_at >= end:
                    break
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                kind = self.rng.choices(self.kinds, weights)[0]
                task = asyncio.create_task(self.one(session, kind, t0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if time.perf_counter() - last_print >= 60:
                    last_print = time.perf_counter()
                    s = self.samples[-1] if self.samples else None
                    print(
                        f"[{(last_print - t0) / 60:5.1f} min] sent {len(self.results) + len(tasks)} "
                        f"in flight {len(tasks)} rss {s.rss_mib if s else float('nan'):.1f} MiB",
                        flush=True,
                    )
            if tasks:
                await asyncio.wait(tasks)
            await asyncio.sleep(1.0)  # let the server finish its bookkeeping
            after = await self.scrape(session)
            stop.set()
            await sampler  # before the heap snapshot: taking one allocates, and would show in the RSS
            memory_end = await self.debug_memory(session)
        return {"after": after, "memory_start": memory_start, "memory_end": memory_end}

    async def warm_up(self, session: aiohttp.ClientSession) -> None:
        """A few requests so one-time costs (first decode, SDK clients, imports) stay out of the slope."""
        for kind in self.kinds[:4]:
            for _ in range(2):
                await self.one(session, kind, time.perf_counter())
        self.results.clear()

    def start_router(self, tmp: Path) -> None:
        self.fake = FakeFrontier().start()
        keys = tmp / "keys.yaml"
        self.tenant_keys = []
        for tenant in ("acme", "globex"):
            key, stored = new_key(tenant)
            append_key(keys, stored)
            self.tenant_keys.append(key)
        self.admin_key, stored = new_key("ops")
        append_key(keys, stored)
        cfg = tmp / "router.yaml"
        cfg.write_text(router_config(self.fake, tmp, keys, self.args))
        env = {**os.environ, "XDG_DATA_HOME": str(tmp)}
        if self.args.tracemalloc:
            env["PYTHONTRACEMALLOC"] = "1"
        port = self.args.port
        cmd = [sys.executable, "-m", "router.cli", "serve", "--config", str(cfg), "--port", str(port)]
        self.log = open(tmp / "router.log", "wb")  # noqa: SIM115 - closed in main
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (tmp / "router.log").read_text(errors="replace")[-3000:]  # the folder goes when we exit
                raise SystemExit(f"the router exited ({self.proc.returncode}); its log ends:\n{tail}")
            try:
                out = subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", self.base + "/readyz"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                if out.stdout == "200":
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        tail = (tmp / "router.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"the router did not become ready within 180 s; its log ends:\n{tail}")

    def stop_router(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.fake.stop()


# The first text of an answer in either wire format (a non-empty OpenAI content delta, an Anthropic text delta).
_TEXT_DELTA = re.compile(rb'"content":"[^"]|"type":"text_delta","text":"[^"]')
_USAGE = re.compile(rb'"(?:completion_tokens|output_tokens)":(\d+)')


def _completion_tokens(raw: bytes) -> int | None:
    """The answer's token count from its usage (the last one: Anthropic's message_delta beats message_start)."""
    found = _USAGE.findall(raw)
    return int(found[-1]) if found else None


def _designed(kind: Kind, outcome: str) -> bool:
    if kind.expect == "ok":
        return outcome in ("ok", "ok-fallback")  # auto/local may fall back; both are answers
    if kind.expect == "ok-fallback":
        return outcome == "ok-fallback"
    if kind.expect == "throttled":
        return outcome == "throttled"
    if kind.expect == "inband-or-fallback":
        return outcome in ("inband", "ok-fallback")
    return False


def summarise(soak: Soak, extra: dict[str, Any]) -> dict[str, Any]:
    res = soak.results
    minutes = soak.args.minutes
    samples = soak.samples
    tail = [(s.t, s.rss_mib) for s in samples if s.t >= minutes * 60 / 3]
    local = sorted(r.latency for r in res if r.kind == "local" and r.status == 200)
    # Local answers the engine had to compute (no cache hit), and how their time splits: waiting plus the prompt
    # (time to the first text delta, streams only) and decoding (the rest, per token after the first).
    computed = [r for r in res if r.tier == "local" and r.status == 200 and not r.cache.startswith("hit")]
    streamed = [r for r in computed if r.ttft is not None]
    slow = [r for r in streamed if r.latency > 3]
    frontier = sorted(r.latency for r in res if r.kind == "frontier" and r.status == 200)
    after = extra["after"]

    def pct(xs: list[float]) -> dict[str, float]:
        if not xs:
            return {}
        return {f"p{q}": round(percentile(xs, q), 3) for q in (50, 90, 99)} | {"max": round(xs[-1], 3), "n": len(xs)}

    by_kind: dict[str, dict[str, int]] = {}
    for r in res:
        by_kind.setdefault(r.kind, {}).setdefault(r.outcome, 0)
        by_kind[r.kind][r.outcome] += 1
    bad = [asdict(r) for r in res if not r.as_designed and r.outcome != "shed"]
    steps = [(s.t, sum(v for k, v in s.metrics.items() if k.startswith("router_engine_steps{"))) for s in samples]
    gauges = {
        k: v
        for k, v in after.items()
        if k.startswith(("router_in_flight", "router_engine_slots_in_use", "router_queue_depth"))
    }
    duration = (steps[-1][0] - steps[0][0]) if len(steps) > 1 else float("nan")
    busy = [s for s in samples if s.t <= minutes * 60]  # while the traffic ran

    def gauge(prefix: str) -> dict[str, float]:
        values = [sum(v for k, v in s.metrics.items() if k.startswith(prefix)) for s in busy if s.metrics]
        return {"mean": round(sum(values) / len(values), 2), "max": max(values)} if values else {}

    def decode_per_token(r: Result) -> float | None:
        return (r.latency - r.ttft) / (r.tokens - 1) if r.ttft is not None and r.tokens and r.tokens > 1 else None

    per_token = sorted(x for x in map(decode_per_token, streamed) if x is not None)

    # CPU cores each side used while the traffic ran, and local latency in quiet vs busy stretches of the machine
    # (the 1-minute load average of the sample nearest each request's start; 2 cores: above 2.5 others queue).
    cores: dict[str, float] = {}
    if len(busy) > 1 and busy[-1].t > busy[0].t:
        span = busy[-1].t - busy[0].t
        cores = {k: round((busy[-1].cpu_s[k] - busy[0].cpu_s[k]) / span, 2) for k in busy[0].cpu_s}

    def load_at(t: float) -> float:
        return min(busy, key=lambda s: abs(s.t - t)).load1 if busy else float("nan")

    quiet = sorted(r.latency for r in computed if load_at(r.start) <= 2.5)
    loaded = sorted(r.latency for r in computed if load_at(r.start) > 2.5)
    return {
        "minutes": minutes,
        "rate": soak.args.rate,
        "requests": len(res),
        "rss_start_mib": round(samples[0].rss_mib, 1) if samples else None,
        "rss_end_mib": round(samples[-1].rss_mib, 1) if samples else None,
        "rss_slope_last_two_thirds_mib_per_min": round(slope_per_min(tail), 3),
        "rss_slope_whole_mib_per_min": round(slope_per_min([(s.t, s.rss_mib) for s in samples]), 3),
        "local_latency_s": pct(local),
        "local_over_3s": sum(1 for x in local if x > 3),
        "local_computed": {
            "n": len(computed),
            "share_of_local_tier": round(len(computed) / max(1, sum(1 for r in res if r.tier == "local")), 3),
            "latency_s": pct(sorted(r.latency for r in computed)),
            "tokens_mean": round(sum(r.tokens or 0 for r in computed) / max(1, len(computed)), 1),
            "stream_ttft_s": pct(sorted(r.ttft for r in streamed if r.ttft is not None)),
            "stream_decode_s": pct(sorted(r.latency - r.ttft for r in streamed if r.ttft is not None)),
            "stream_decode_per_token_s": pct(per_token),
            "over_3s_streams": len(slow),
            "over_3s_ttft_share": round(sum(r.ttft or 0 for r in slow) / max(1e-9, sum(r.latency for r in slow)), 3),
        },
        "engine_slots_in_use": gauge("router_engine_slots_in_use"),
        "engine_threads": gauge("router_engine_threads"),
        "cpu_cores_used": cores,
        "engine_cpu_ms_per_token": _cpu_per_token(busy),
        "machine_load1": {
            "mean": round(sum(s.load1 for s in busy) / max(1, len(busy)), 2),
            "max": max((s.load1 for s in busy), default=float("nan")),
        },
        "local_computed_latency_by_load": {"load1<=2.5": pct(quiet), "load1>2.5": pct(loaded)},
        "engine_queue_depth": gauge("router_queue_depth"),
        "frontier_latency_s": pct(frontier),
        "loop_lag_p99_s": round(histogram_quantile(after, "router_event_loop_lag_seconds", 0.99), 4),
        "loop_lag_max_s": after.get("router_event_loop_lag_max_seconds"),
        "engine_steps_per_s": round((steps[-1][1] - steps[0][1]) / duration, 1) if len(steps) > 1 else None,
        "outcomes": by_kind,
        "shed_by_local_queue_bound": sum(1 for r in res if r.outcome == "shed"),
        "not_as_designed": len(bad),
        "not_as_designed_examples": bad[:10],
        "gauges_after": gauges,
        "gauges_zero": all(v == 0 for v in gauges.values()),
        "memory_growth_top": (extra["memory_end"] or {}).get("growth", [])[:15],
    }


def _cpu_per_token(busy: list[Sample]) -> float | None:
    """The engine worker's CPU milliseconds per generated token (its prompts included): what no neighbour on the
    machine can change, unlike its tokens per wall second."""
    ok = [s for s in busy if s.metrics and s.cpu_s]
    if len(ok) < 2:
        return None
    tokens = [sum(v for k, v in s.metrics.items() if k.startswith("router_engine_tokens_generated{")) for s in ok]
    made = tokens[-1] - tokens[0]
    used = ok[-1].cpu_s["engine_worker"] - ok[0].cpu_s["engine_worker"]
    return round(used / made * 1000, 1) if made > 0 else None


def _kept(metrics: dict[str, float]) -> dict[str, float]:
    keep = ("router_in_flight", "router_engine_", "router_queue_depth", "router_event_loop_lag_max", "router_cache")
    return {k: v for k, v in metrics.items() if k.startswith(keep) or k.startswith("router_event_loop_lag_seconds_c")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5.0, help="requests per second, Poisson arrivals")
    p.add_argument("--local-share", type=float, default=0.3, help="share sent to the local model by name")
    p.add_argument("--fault-share", type=float, default=0.01, help="share of requests that hit a fault model")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS and /metrics samples")
    p.add_argument("--request-timeout-s", type=float, default=120.0)
    p.add_argument("--port", type=int, default=18931)
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads (0: the engine's default)")
    p.add_argument(
        "--local-format",
        default="Q4_1",
        choices=["Q4_1", "Q8_0", "Q4_0", "F16"],
        help="local weights: the shipped Q4_1, or it requantised (benchmarks/local_quant.py)",
    )
    p.add_argument("--cache-entries", type=int, default=1000, help="cache.max_entries: small, so it fills early")
    p.add_argument("--tracemalloc", action="store_true", help="run the router with PYTHONTRACEMALLOC=1")
    p.add_argument("--out", help="output directory (default benchmarks/out/soak-<UTC time>)")
    args = p.parse_args()
    out = Path(args.out or ROOT / "benchmarks" / "out" / time.strftime("soak-%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    soak = Soak(args)
    with tempfile.TemporaryDirectory(prefix="hybrid-router-soak-") as tmp:
        try:
            soak.start_router(Path(tmp))  # inside the try: a router that never got ready must not outlive us
            extra = asyncio.run(soak.traffic())
        finally:
            soak.stop_router()
            soak.log.close()
            (out / "router.log").write_bytes((Path(tmp) / "router.log").read_bytes()[-200_000:])
    summary = summarise(soak, extra)
    (out / "soak.json").write_bytes(
        orjson.dumps(
            {
                "summary": summary,
                "samples": [asdict(s) | {"metrics": _kept(s.metrics)} for s in soak.samples],
                "results": [asdict(r) for r in soak.results],
                "memory_start": extra["memory_start"],
                "memory_end": extra["memory_end"],
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {out}/soak.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
