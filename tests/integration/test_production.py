"""Tenants, keys, rate limits, budgets, the ledger, shedding, shutdown, metrics and secrecy, through the real server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time

import aiohttp
import anthropic
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.app import ACCOUNTING
from router.config import load_settings
from tests.conftest import MODEL
from tests.support.keys import tenant_keys
from tests.support.server import ServerThread, running

pytestmark = pytest.mark.model

CANARY_PROMPT = "canary-prompt-7f3a9c"
# A frontier stream paced by the fake (~0.4 s): long enough to be in flight while something else happens.
SLOW_STREAM = {
    "model": "claude-slow",
    "stream": True,
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Plan a long migration with many careful steps"}],
}


@pytest.fixture(scope="module")
def setup(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prod")
    keys_file = tmp / "keys.yaml"
    keys = tenant_keys(keys_file, ("acme", "thrifty", "frugal", "ops", "localonly", "busy", "rich"))
    (tmp / "frontier-key").write_text("sk-frontier-canary-1234")
    config = tmp / "router.yaml"
    config.write_text(f"""
cache: {{enabled: false}}
auth: {{enabled: true, keys_file: "{keys_file}", metrics_public: true}}
accounting: {{ledger_path: "{tmp / "ledger.sqlite3"}"}}
limits: {{max_in_flight: 64, retry_after_s: 2}}
tenants:
  - {{name: acme, requests_per_s: 0.01, burst: 2}}
  - {{name: thrifty, budget: {{usd_per_day: 0.05}}, on_budget_exhausted: reject}}
  - {{name: frugal, budget: {{usd_per_day: 0.0}}, on_budget_exhausted: local,
      workflows: {{nightly: {{usd_per_day: 1.0}}}}}}
  - {{name: ops, admin: true}}
  - {{name: localonly, allowed_tiers: [local]}}
  - {{name: busy, max_in_flight: 1}}
  - {{name: rich, budget: {{usd_per_day: 100.0}}}}
frontier:
  models:
    - {{name: claude, provider: anthropic, model_id: ok, base_url: "{fake.url}", api_key_file: "{tmp / "frontier-key"}",
        input_price_per_mtok: 1000.0, output_price_per_mtok: 1000.0}}
    - {{name: claude-slow, provider: anthropic, model_id: slow, base_url: "{fake.url}",
        api_key_file: "{tmp / "frontier-key"}", input_price_per_mtok: 1000.0, output_price_per_mtok: 1000.0}}
""")
    return load_settings(config, environ={}), keys, tmp


@pytest.fixture(scope="module")
def server(setup):
    settings, _, _ = setup
    with running(settings) as s:
        yield s


def client(server, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key or "none", max_retries=0, timeout=60)


def ask(server, key, model=MODEL, prompt="Say hi", **kw):
    return client(server, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=kw.pop("max_tokens", 4), **kw
    )


def rows(setup, sql: str, *args) -> list[tuple]:
    server_ledger = setup[2] / "ledger.sqlite3"
    conn = sqlite3.connect(server_ledger)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def flush(server) -> None:
    server.app[ACCOUNTING].ledger.flush()


# -- keys and tenants ----------------------------------------------------------------------------------------------


def test_keys_are_required_and_checked(server, setup) -> None:
    _, keys, _ = setup
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(server, None)
    assert caught.value.body["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        ask(server, keys["ops"][:-2] + "xx")  # right id, wrong secret
    assert ask(server, keys["ops"]).parse().choices[0].message.content is not None
    # x-api-key works too, and the Anthropic API answers in its own error format.
    bad = anthropic.Anthropic(base_url=server.base_url, api_key="hr_000000000000_nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught_a:
        bad.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert caught_a.value.body["type"] == "error" and caught_a.value.body["error"]["type"] == "authentication_error"
    good = anthropic.Anthropic(base_url=server.base_url, api_key=keys["ops"], max_retries=0)
    assert good.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}]).content


def test_health_needs_no_key(server) -> None:
    async def get(path: str) -> int:
        async with aiohttp.ClientSession() as s, s.get(server.base_url + path) as r:
            return r.status

    assert asyncio.run(get("/healthz")) == 200 and asyncio.run(get("/readyz")) == 200


def test_tenant_tiers_are_enforced(server, setup) -> None:
    _, keys, _ = setup
    with pytest.raises(openai.PermissionDeniedError):
        ask(server, keys["localonly"], model="frontier")
    with pytest.raises(openai.PermissionDeniedError):
        ask(server, keys["localonly"], model="claude")
    # A routed request that would go to the frontier is served locally instead, and says why.
    raw = ask(server, keys["localonly"], model="auto", extra_body={"metadata": {"task": "planning"}})
    assert raw.headers["x-router-tier"] == "local" and raw.headers["x-router-reason"] == "tenant-policy"


def test_rate_limit_is_a_429_with_retry_after(server, setup) -> None:
    _, keys, _ = setup
    statuses = []
    for _ in range(4):
        try:
            raw = ask(server, keys["acme"])
            statuses.append(200)
            assert raw.headers["x-ratelimit-limit-requests"] == "2"
        except openai.RateLimitError as exc:
            statuses.append(429)
            assert float(exc.response.headers["retry-after"]) >= 1
            assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
            assert exc.body["code"] == "rate_limit_exceeded"
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]


# -- budgets ---------------------------------------------------------------------------------------------------


async def _burst(url: str, key: str, n: int) -> list[int]:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Plan a migration"}], "max_tokens": 10}

    async def one(i: int) -> int:
        payload = {**body, "stream": i % 2 == 0}
        async with session.post(
            url + "/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
        ) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_concurrent_requests_never_overshoot_the_budget(server, setup) -> None:
    _, keys, _ = setup
    statuses = asyncio.run(_burst(server.base_url, keys["thrifty"], 50))
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}
    flush(server)
    (spent,) = rows(setup, "SELECT SUM(cost_usd) FROM requests WHERE tenant = 'thrifty'")[0]
    assert 0 < spent <= 0.05
    snap = server.app[ACCOUNTING].budgets.snapshot(("tenant", "thrifty"))
    assert snap["reserved_usd"] == pytest.approx(0.0, abs=1e-12)  # every reservation was settled
    assert snap["usd_day"] == pytest.approx(spent)


def test_exhausted_budget_degrades_to_local_and_workflow_budgets_apply(server, setup) -> None:
    _, keys, _ = setup
    raw = ask(server, keys["frugal"], model="auto", extra_body={"metadata": {"task": "planning"}})
    assert raw.headers["x-router-budget"] == "exhausted" and raw.headers["x-router-tier"] == "local"
    # The workflow has its own budget: with one set for "nightly" the tenant's zero budget still applies.
    raw = ask(
        server,
        keys["frugal"],
        model="auto",
        extra_headers={"x-router-workflow": "nightly"},
        extra_body={"metadata": {"task": "planning"}},
    )
    assert raw.headers["x-router-tier"] == "local"


def test_cancelled_streams_are_settled(server, setup, fake) -> None:
    _, keys, _ = setup

    async def read_two_then_leave() -> None:
        async with aiohttp.ClientSession() as s:
            body = SLOW_STREAM
            async with s.post(
                server.base_url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {keys['rich']}", "x-request-id": "cancel-me"},
            ) as r:
                seen = 0
                async for line in r.content:
                    if b'"content":"' in line and b'"content":""' not in line:
                        seen += 1
                        if seen == 2:
                            break

    asyncio.run(read_two_then_leave())
    deadline = time.monotonic() + 10
    while True:
        flush(server)
        found = rows(setup, "SELECT status, completion_tokens, cost_usd FROM requests WHERE id = 'cancel-me'")
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ((status, completion_tokens, cost),) = found
    assert status == "cancelled" and completion_tokens >= 1 and cost > 0
    snap = server.app[ACCOUNTING].budgets.snapshot(("tenant", "rich"))
    assert snap["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


# -- ledger and usage ------------------------------------------------------------------------------------------


def test_ledger_totals_equal_the_usage_returned(server, setup) -> None:
    _, keys, _ = setup
    returned = [0, 0]
    for i in range(3):
        usage = (
            ask(
                server,
                keys["ops"],
                prompt=f"Count to {i}",
                max_tokens=6,
                extra_headers={"x-router-workflow": "ledger-check"},
            )
            .parse()
            .usage
        )
        returned[0] += usage.prompt_tokens
        returned[1] += usage.completion_tokens
    flush(server)
    ((p, c, n),) = rows(
        setup,
        "SELECT SUM(prompt_tokens), SUM(completion_tokens), COUNT(*) FROM requests WHERE workflow = 'ledger-check'",
    )
    assert (p, c, n) == (returned[0], returned[1], 3)
    # Nothing of the prompt text is in the ledger.
    columns = [r[1] for r in rows(setup, "PRAGMA table_info(requests)")]
    assert not {"prompt", "completion", "messages", "text"} & set(columns)


async def _get_json(url: str, key: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(url, headers={"authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json()


def test_usage_endpoint_filters(server, setup) -> None:
    _, keys, _ = setup
    ask(server, keys["ops"], extra_headers={"x-router-workflow": "usage-check", "x-router-task": "classification"})
    status, body = asyncio.run(_get_json(server.base_url + "/v1/router/usage?workflow=usage-check", keys["ops"]))
    assert status == 200
    assert [r["task"] for r in body["tasks"]] == ["classification"] and body["totals"]["requests"] == 1
    status, body = asyncio.run(_get_json(server.base_url + "/v1/router/usage?tenant=thrifty", keys["ops"]))
    assert status == 200 and body["totals"]["frontier"] >= 1
    status, body = asyncio.run(_get_json(server.base_url + f"/v1/router/usage?since={time.time() + 60}", keys["ops"]))
    assert body["tasks"] == []
    # A tenant's key sees only its own usage.
    status, body = asyncio.run(_get_json(server.base_url + "/v1/router/usage?tenant=ops", keys["acme"]))
    assert status == 403 and body["error"]["type"] == "permission_error"
    status, body = asyncio.run(_get_json(server.base_url + "/v1/router/usage?since=yesterday", keys["ops"]))
    assert status == 400 and body["error"]["param"] == "since"


# -- back-pressure and lifecycle -----------------------------------------------------------------------------------


async def _slow_then_second(base: str, key: str) -> tuple[list[str], float, int, dict]:
    async with aiohttp.ClientSession() as s:
        body = SLOW_STREAM
        h = {"authorization": f"Bearer {key}"}
        first = await s.post(base + "/v1/chat/completions", json=body, headers=h)
        await first.content.readline()  # in flight now
        t = time.perf_counter()
        async with s.post(base + "/v1/chat/completions", json={**body, "model": MODEL}, headers=h) as second:
            shed_after, shed_status, shed_headers = time.perf_counter() - t, second.status, dict(second.headers)
        lines = [line.decode() async for line in first.content]
        first.release()
        return lines, shed_after, shed_status, shed_headers


def test_shedding_is_quick_and_in_flight_work_completes(server, setup) -> None:
    _, keys, _ = setup
    lines, shed_after, status, headers = asyncio.run(_slow_then_second(server.base_url, keys["busy"]))
    assert status == 503 and headers["Retry-After"] == "2"
    assert shed_after < 0.5
    assert lines[-2].strip() == "data: [DONE]" and any('"finish_reason":"stop"' in line for line in lines)


def _stream_across_shutdown(settings, key: str) -> tuple[ServerThread, list[bytes]]:
    """Start a slow stream, stop the server while it runs (SIGTERM's path), return what the client received."""
    server = ServerThread(settings).start()
    result: dict[str, object] = {}

    async def stream() -> None:
        async with aiohttp.ClientSession() as s:
            body = SLOW_STREAM
            async with s.post(
                server.base_url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            ) as r:
                await r.content.readline()
                lines = result["lines"] = []
                result["started"] = True
                with contextlib.suppress(aiohttp.ClientPayloadError):  # the connection may close right after
                    async for line in r.content:
                        lines.append(line)

    t = threading.Thread(target=lambda: asyncio.run(stream()))
    t.start()
    while not result.get("started"):
        time.sleep(0.01)
    server.stop()  # stop accepting, drain in-flight, then close engines and the ledger
    t.join(30)
    return server, [line.strip() for line in result["lines"] if line.strip()]  # type: ignore[union-attr]


def test_graceful_shutdown_completes_in_flight_streams(setup) -> None:
    settings, keys, _ = setup
    server, lines = _stream_across_shutdown(settings, keys["ops"])
    assert lines[-1] == b"data: [DONE]" and b'"finish_reason":"stop"' in b"".join(lines)
    with pytest.raises(openai.APIConnectionError):
        ask(server, keys["ops"])


# -- observability and secrecy -----------------------------------------------------------------------------------


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.text()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_metrics_parse_and_move(server, setup) -> None:
    _, keys, _ = setup
    before = _samples(asyncio.run(_text(server.base_url + "/metrics")))
    ask(server, keys["ops"], prompt="metrics please")
    after = _samples(asyncio.run(_text(server.base_url + "/metrics")))
    key = (
        "router_requests_total",
        (("endpoint", "/v1/chat/completions"), ("status", "ok"), ("task", "general"), ("tier", "local")),
    )
    assert after[key] == before.get(key, 0) + 1
    assert any(name == "router_request_duration_seconds_count" for name, _ in after)
    assert ("router_in_flight", ()) in after


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_canary_key_and_prompt_never_leak(server, setup, fake) -> None:
    _, keys, tmp = setup
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    canary_key = keys["ops"]
    bodies = []
    try:
        ask(server, canary_key, prompt=CANARY_PROMPT)
        ask(server, canary_key, model="claude", prompt=CANARY_PROMPT)
        with client(server, canary_key).chat.completions.create(
            model="claude", messages=[{"role": "user", "content": CANARY_PROMPT}], max_tokens=5, stream=True
        ) as stream:
            list(stream)
        for bad in (
            {"model": MODEL, "messages": [{"role": "wizard", "content": CANARY_PROMPT}]},
            {"model": CANARY_PROMPT, "messages": [{"role": "user", "content": CANARY_PROMPT}]},
        ):
            try:
                client(server, canary_key).chat.completions.create(**bad)
            except openai.APIStatusError as exc:
                bodies.append(orjson.dumps(exc.body).decode())
        try:
            client(server, canary_key[:-3] + "zzz").chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": CANARY_PROMPT}]
            )
        except openai.APIStatusError as exc:
            bodies.append(orjson.dumps(exc.body).decode())
        flush(server)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    secret = canary_key.split("_", 2)[2]
    metrics_text = asyncio.run(_text(server.base_url + "/metrics"))
    ledger_bytes = (tmp / "ledger.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in tmp.glob("ledger.sqlite3-*")
    )
    logs = "\n".join(capture.lines)
    assert any('"event":"request"' in line for line in capture.lines)  # the access log did run
    for place, text in (("logs", logs), ("metrics", metrics_text), ("error bodies", "\n".join(bodies))):
        assert secret not in text, place
        assert "sk-frontier-canary-1234" not in text, place
    # Error bodies may not echo the prompt; only the rejected model name is named back (it is not a prompt).
    assert CANARY_PROMPT not in logs and CANARY_PROMPT not in metrics_text
    assert CANARY_PROMPT.encode() not in ledger_bytes and secret.encode() not in ledger_bytes
    assert bodies[0].count(CANARY_PROMPT) == 0


def test_streams_cut_by_the_drain_deadline_end_with_an_error_event(setup) -> None:
    settings, keys, _ = setup
    short = settings.model_copy(update={"limits": settings.limits.model_copy(update={"drain_timeout_s": 0.05})})
    _, lines = _stream_across_shutdown(short, keys["ops"])  # the slow stream needs ~0.4 s more than the drain
    assert b'"finish_reason":"stop"' not in b"".join(lines)  # it really was cut
    error = orjson.loads(lines[-2].removeprefix(b"data: "))
    assert error["error"]["type"] == "overloaded_error" and lines[-1] == b"data: [DONE]"


def test_answers_degraded_by_a_spent_budget_are_not_cached(setup) -> None:
    settings, keys, _ = setup
    cached = settings.model_copy(update={"cache": settings.cache.model_copy(update={"enabled": True})})
    with running(cached) as server:
        seen = []
        for _ in range(2):
            raw = ask(
                server,
                keys["frugal"],
                model="auto",
                prompt="Plan a data-center move",
                extra_body={"metadata": {"task": "planning"}},
            )
            seen.append((raw.headers["x-router-budget"], raw.headers["x-router-cache"]))
        # Both were served locally because the budget is spent; the first was not stored under the frontier
        # decision's key, so the second is a miss too (with the budget back, it must reach the frontier).
        assert seen == [("exhausted", "miss"), ("exhausted", "miss")]
