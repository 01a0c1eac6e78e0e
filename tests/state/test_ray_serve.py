"""The router on a real local Ray cluster (ray.init on this machine): the local engine (real llama.cpp, SmolLM2) as
its own Serve application with its own autoscaling config, the router as another with 2 replicas sharing one real
Redis; the openai SDK through Serve's proxy reaches both replicas, and one tenant's token budget is one budget
across them (with two separate budgets the tenant would get about twice as much), and /v1/router/usage on either
replica counts every request (the shared ledger)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import openai
import pytest
import redis

from tests.support.redis_server import RedisServer, free_port

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ray[serve]==2.60.*' to run the ray test")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'ray[serve]==2.60.*'")

pytestmark = [pytest.mark.ray, pytest.mark.model, pytest.mark.slow]  # ~35 s on 2 vCPUs

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 400  # tokens per day for the tenant, across every replica


def configs(tmp: Path, proxy: str, fake_url: str, redis_url: str, prefix: str) -> tuple[Path, Path]:
    engine = tmp / "engine.yaml"
    engine.write_text("""
models: [{name: smollm2-135m-instruct, engine: llamacpp, n_threads: 1, n_parallel: 2}]
cache: {enabled: false}
embeddings: {enabled: false}
accounting: {ledger_path: ""}
""")
    (tmp / "key").write_text("sk-test")
    router = tmp / "router.yaml"
    router.write_text(f"""
models:
  - {{name: smollm2-135m-instruct, engine: openai_http, base_url: "{proxy}/engine/v1",
      upstream_model: smollm2-135m-instruct, api_key_env: null}}
cache: {{enabled: false}}
embeddings: {{enabled: false}}
accounting: {{ledger_path: "{tmp / "ledger.sqlite3"}"}}
state: {{url: "{redis_url}", key_prefix: "{prefix}", ledger_drain: true}}
tenants:
  - {{name: default, budget: {{tokens_per_day: {BUDGET}}}, on_budget_exhausted: reject}}
frontier:
  models:
    - {{name: claude, provider: anthropic, model_id: ok, base_url: "{fake_url}", api_key_file: "{tmp / "key"}"}}
""")
    return engine, router


def wait_ok(fn, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (openai.APIConnectionError, openai.InternalServerError, openai.NotFoundError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_router_on_ray_serve_two_replicas_one_budget(redis_server: RedisServer, fake, tmp_path: Path) -> None:
    port = free_port()
    proxy = f"http://127.0.0.1:{port}"
    prefix = f"ray{uuid.uuid4().hex[:6]}:"
    engine_yaml, router_yaml = configs(tmp_path, proxy, fake.url, redis_server.url, prefix)
    ray.init(
        num_cpus=2,
        object_store_memory=80 * 1024 * 1024,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        logging_level="WARNING",
    )
    try:
        from deploy.ray.serve_app import RouterServer

        serve.start(http_options={"host": "127.0.0.1", "port": port})
        engine = RouterServer.options(
            name="Engine",
            ray_actor_options={"num_cpus": 0.5},
            autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2},
        )
        serve.run(engine.bind(str(engine_yaml)), name="engine", route_prefix="/engine")
        router = RouterServer.options(name="Router", num_replicas=2, ray_actor_options={"num_cpus": 0.25})
        serve.run(router.bind(str(router_yaml)), name="router", route_prefix="/")

        client = openai.OpenAI(base_url=proxy + "/v1", api_key="x", max_retries=0, timeout=120)
        eng = openai.OpenAI(base_url=proxy + "/engine/v1", api_key="x", max_retries=0, timeout=120)
        wait_ok(lambda: eng.models.list())  # the engine application is up (its model loaded)

        # The local tier through the router replicas and the engine application.
        def local():
            return client.chat.completions.with_raw_response.create(
                model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
            )

        first = wait_ok(local)
        assert first.parse().choices[0].message.content is not None

        # Frontier calls under one token budget until every replica refuses.
        served: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        spent = 0
        for i in range(60):
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="claude", messages=[{"role": "user", "content": f"Plan a migration {i}"}], max_tokens=20
                )
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "budget_exhausted", exc.body
                refused[exc.response.headers["x-serve-replica"]] += 1
                if len(refused) == 2 and sum(refused.values()) >= 6:
                    break
                continue
            served[raw.headers["x-serve-replica"]] += 1
            spent += raw.parse().usage.total_tokens
        print(f"ray serve: served {dict(served)}, refused {dict(refused)}, spent {spent} of {BUDGET} tokens")
        assert len(served) == 2, f"both router replicas answered: {served}"
        assert len(refused) == 2, f"both router replicas refused once the one budget was spent: {refused}"
        assert 0 < spent <= BUDGET  # one budget: two per-replica budgets would have let through about 2 x BUDGET

        r = redis.Redis.from_url(redis_server.url)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        in_redis = int(r.hget(f'{prefix}budget:["tenant","default"]:spend:{day}', "tok") or 0)
        deadline = time.monotonic() + 10
        while in_redis != spent and time.monotonic() < deadline:  # settlement runs just after each answer
            time.sleep(0.2)
            in_redis = int(r.hget(f'{prefix}budget:["tenant","default"]:spend:{day}', "tok") or 0)
        assert in_redis == spent

        # The shared ledger: either replica's usage counts every request that was answered or refused.
        answered = 1 + sum(served.values()) + sum(refused.values())  # each replica made only about half of them
        usage = client.get("/router/usage", cast_to=object)
        assert usage["totals"]["requests"] >= answered, usage  # (+ any warm-up attempts that failed)
    finally:
        serve.shutdown()
        ray.shutdown()
