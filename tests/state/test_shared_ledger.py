"""The usage ledger shared through one real Redis: two real router servers each answer /v1/router/usage with both
replicas' requests; the drainer puts every row into the SQL ledger exactly once even when it dies mid-batch
(before or after its commit); Redis stalled → requests still answered, rows buffered up to the bound and then
counted as dropped, /v1/router/usage a 503 in the caller's format; Redis back → the buffered rows arrive."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import openai
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from router.accounting.ledger import Entry, Ledger
from router.config import load_settings
from router.state.drain import LedgerDrainer
from router.state.health import StateHealth
from router.state.ledger import SharedLedger
from tests.support.redis_server import RedisServer
from tests.support.server import running


@pytest.fixture(autouse=True)
def _local_key(monkeypatch) -> None:
    monkeypatch.setenv("HR_LEDGER_TEST_KEY", "sk-test")  # the fake upstream refuses a call without a key


def write_config(tmp, fake_url: str, state: str, ledger: str, name: str):
    (tmp / "frontier-key").write_text("sk-test")
    path = tmp / name
    path.write_text(f"""
models:
  - {{name: fake-local, engine: openai_http, base_url: "{fake_url}/v1", upstream_model: ok,
      api_key_env: HR_LEDGER_TEST_KEY}}
cache: {{enabled: false}}
embeddings: {{enabled: false}}
accounting: {{ledger_path: "{ledger}"}}
state: {state}
frontier:
  models:
    - {{name: claude, provider: anthropic, model_id: ok, base_url: "{fake_url}",
        api_key_file: "{tmp / "frontier-key"}"}}
""")
    return load_settings(path, environ={})


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def metric(base_url: str, name: str) -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def chat(base_url: str, model: str, n: int) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0, timeout=30)
    for i in range(n):
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=5)
        assert r.choices[0].message.content is not None


def sql_rows(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT id, tier FROM requests"))
    finally:
        conn.close()


def test_two_replicas_see_each_others_usage_and_the_drain_has_every_row(
    redis_server: RedisServer, fake, tmp_path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    drained = tmp_path / "drained.sqlite3"
    # Replica A also drains (the lock makes it the only drainer); B only appends. Their ledger paths differ on
    # purpose: B's file is never written in shared mode.
    a_settings = write_config(
        tmp_path,
        fake.url,
        f'{{url: "{redis_server.url}", key_prefix: "{prefix}", ledger_drain: true}}',
        drained,
        "a.yaml",
    )
    b_settings = write_config(
        tmp_path, fake.url, f'{{url: "{redis_server.url}", key_prefix: "{prefix}"}}', tmp_path / "b.sqlite3", "b.yaml"
    )
    with running(a_settings) as a, running(b_settings) as b:
        chat(a.base_url, "fake-local", 3)
        chat(b.base_url, "fake-local", 2)
        chat(b.base_url, "claude", 1)
        for server in (a, b):
            status, body = get(server.base_url + "/v1/router/usage")
            assert status == 200, body
            totals = body["totals"]
            assert totals["requests"] == 6 and totals["local"] == 5 and totals["frontier"] == 1
            assert totals["prompt_tokens"] > 0 and totals["completion_tokens"] > 0
        # A window that is not whole days is answered from the stream's rows: the same figures.
        status, body = get(b.base_url + f"/v1/router/usage?since={time.time() - 600}")
        assert status == 200 and body["totals"]["requests"] == 6
        # The dashboard reads every replica's recent rows too.
        status, body = get(a.base_url + "/dashboard/data")
        assert status == 200 and body["all"]["requests"] == 6 and body["all"]["tiers"]["frontier"] == 1, body
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if len(sql_rows(drained)) >= 6:
                    break
            except sqlite3.OperationalError:  # the drainer has not made its schema yet
                pass
            time.sleep(0.1)
    rows = sql_rows(drained)
    assert len(rows) == 6 and len({r[0] for r in rows}) == 6
    assert sorted(r[1] for r in rows) == ["frontier"] + ["local"] * 5
    assert Ledger(str(drained)).usage()[0]["requests"] == 6  # `hybrid-router usage` and calibrate read this file
    assert not (tmp_path / "b.sqlite3").exists()


def entry(i: int) -> Entry:
    return Entry(id=f"r{i}", ts=time.time(), tenant="acme", workflow="", task="chat", tier="local", model="m",
                 api="openai", status="ok", prompt_tokens=10, completion_tokens=i)  # fmt: skip


def test_a_drainer_that_dies_mid_batch_loses_nothing_and_duplicates_nothing(redis_server: RedisServer, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    sql = tmp_path / "ledger.sqlite3"

    def drainer(**kw) -> LedgerDrainer:
        client = aioredis.from_url(redis_server.url, socket_timeout=5)
        return LedgerDrainer(client, StateHealth(redis_server.url, 2.0), Ledger(str(sql)), prefix=prefix, **kw)

    async def scenario() -> None:
        ledger = SharedLedger(
            aioredis.from_url(redis_server.url),
            redis.Redis.from_url(redis_server.url),
            StateHealth(redis_server.url, 2.0),
            prefix=prefix,
            maxlen=10_000,
            buffer=1000,
            retention_days=1,
        )
        await ledger.astart()
        for i in range(30):
            ledger.record(entry(i))
        await ledger.push()
        # Drainer 1 reads a batch and dies before committing: the rows stay pending in the group, unacknowledged.
        first = drainer(batch=12)
        await first.ensure_group()
        lost = await first.next_batch()
        assert len(lost) == 12
        await first.client.aclose()  # "crash": no commit, no ack
        # Drainer 2 reads the next batch, commits it, and dies before acknowledging.
        second = drainer(batch=10)
        await second.ensure_group()
        committed = await second.next_batch()
        assert len(committed) == 10 and not {i for i, _ in committed} & {i for i, _ in lost}
        assert await second.commit(committed) == 10
        await second.client.aclose()
        # Drainer 3 claims both dead drainers' pending rows (idle past claim_idle_s) and drains the rest.
        await asyncio.sleep(0.1)
        third = drainer(batch=100, claim_idle_s=0.05)
        await third.drain_all()
        assert third.delivered == 30  # 12 + 10 reclaimed, 8 new
        assert third.written == 20  # the 10 committed before the crash were not written again
        pending = await third.client.xpending(f"{prefix}ledger:stream", "drain")
        assert pending["pending"] == 0
        await third.aclose()
        await ledger.aclose()

    asyncio.run(scenario())
    rows = sql_rows(sql)
    assert sorted(r[0] for r in rows) == sorted(f"r{i}" for i in range(30))


def test_redis_stalled_requests_answered_rows_buffered_then_delivered(redis_server: RedisServer, fake, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    state = f'{{url: "{redis_server.url}", key_prefix: "{prefix}", timeout_s: 0.2, ledger_buffer: 3}}'
    settings = write_config(tmp_path, fake.url, state, tmp_path / "l.sqlite3", "down.yaml")
    with running(settings) as server:
        chat(server.base_url, "fake-local", 1)
        assert get(server.base_url + "/v1/router/usage")[1]["totals"]["requests"] == 1
        redis_server.pause()
        try:
            started = time.monotonic()
            chat(server.base_url, "fake-local", 5)  # the ledger never holds a request up
            status, body = get(server.base_url + "/v1/router/usage")
            assert time.monotonic() - started < 20
            assert status == 503 and body["error"]["code"] == "state_unavailable", body
            assert "Traceback" not in str(body)
            assert metric(server.base_url, "router_ledger_buffered") == 3
            assert metric(server.base_url, "router_ledger_dropped_total") == 2
        finally:
            redis_server.resume()
        deadline = time.monotonic() + 15
        while (totals := get(server.base_url + "/v1/router/usage")[1].get("totals", {})).get("requests") != 4:
            if time.monotonic() > deadline:
                pytest.fail(f"the buffered rows did not arrive: {totals}")
            time.sleep(0.2)
        assert metric(server.base_url, "router_ledger_buffered") == 0


def test_ledger_drain_cli_drains_once_and_respects_the_lock(redis_server: RedisServer, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    config = tmp_path / "drain.yaml"
    config.write_text(f'state: {{url: "{redis_server.url}", key_prefix: "{prefix}"}}\n')
    sql = tmp_path / "cli.sqlite3"

    async def append() -> None:
        url = redis_server.url
        ledger = SharedLedger(aioredis.from_url(url), redis.Redis.from_url(url), StateHealth(url, 2.0),
                              prefix=prefix, maxlen=10_000, buffer=100, retention_days=1)  # fmt: skip
        await ledger.astart()
        for i in range(5):
            ledger.record(entry(i))
        await ledger.push()
        await ledger.aclose()

    asyncio.run(append())
    cli = [sys.executable, "-m", "router.cli", "ledger-drain", "--once", "--config", str(config), "--ledger", str(sql)]
    lock = redis.Redis.from_url(redis_server.url)
    lock.set(f"{prefix}ledger:drainer", "someone-else", px=60_000)
    held = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert held.returncode == 1 and "another drainer holds the lock" in held.stderr
    lock.delete(f"{prefix}ledger:drainer")
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "5 rows written" in done.stderr
    assert sorted(r[0] for r in sql_rows(sql)) == [f"r{i}" for i in range(5)]
