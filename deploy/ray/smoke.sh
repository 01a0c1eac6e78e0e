#!/usr/bin/env bash
# A local Ray cluster on this machine running deploy/ray/serve_app.py with 2 router replicas that share one Redis,
# against the mock upstream: chat, streaming, an error body, a cache hit across replicas, budget spend in Redis.
#
#   [RAY_VENV=/path/to/venv-with-ray[serve]] bash deploy/ray/smoke.sh
#
# RAY_VENV: a venv with `ray[serve]==2.60.*` (default: the project's .venv, with `pip install "ray[serve]==2.60.*"`;
# the replicas start the router from the project's .venv). Needs port 8000 free; takes about a minute.
# The pytest version of this (engine + router applications): tests/state/test_ray_serve.py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY="$ROOT/.venv/bin/python"
RAY_VENV=${RAY_VENV:-$ROOT/.venv}
export PATH="$RAY_VENV/bin:$PATH"
TMP=$(mktemp -d)
read -r RS REDIS_PORT MOCK_PORT < <("$PY" -c "
import sys; sys.path.insert(0, '$ROOT')
from tests.support.redis_server import find_binary, free_port
print(find_binary(), free_port(), free_port())")
"$RS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
"$PY" -m router.bench.mock --port "$MOCK_PORT" >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
SERVE_PID=""
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
  ray stop >/dev/null 2>&1 || true
  kill "$REDIS_PID" "$MOCK_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
echo sk-mock >"$TMP/key"
cat >"$TMP/router.yaml" <<YAML
models:
  - {name: mock-local, engine: openai_http, base_url: "http://127.0.0.1:$MOCK_PORT/v1", upstream_model: mock, api_key_env: null}
embeddings: {enabled: false}
accounting: {ledger_path: ""}
state: {url: "redis://127.0.0.1:$REDIS_PORT/0", key_prefix: "smoke:"}
tenants:
  - {name: default, budget: {tokens_per_day: 100000}}
frontier:
  models:
    - {name: claude, provider: openai, model_id: mock, base_url: "http://127.0.0.1:$MOCK_PORT/v1", api_key_file: "$TMP/key"}
YAML
cat >"$TMP/serve.yaml" <<YAML
proxy_location: HeadOnly
http_options: {host: 127.0.0.1, port: 8000}
applications:
  - name: router
    route_prefix: /
    import_path: deploy.ray.serve_app:app
    runtime_env:
      env_vars: {PYTHONPATH: "$ROOT", PATH: "$ROOT/.venv/bin:/usr/local/bin:/usr/bin:/bin"}
    args: {config: "$TMP/router.yaml"}
    deployments:
      - {name: RouterServer, num_replicas: 2, ray_actor_options: {num_cpus: 0.5}}
YAML
ray start --head --num-cpus 2 --include-dashboard false --disable-usage-stats >"$TMP/ray.log" 2>&1
RAY_ADDRESS=auto serve run "$TMP/serve.yaml" >"$TMP/serve.log" 2>&1 &
SERVE_PID=$!
ask() { curl -s -m 30 -H 'content-type: application/json' -d "$1" -D "$TMP/h" http://127.0.0.1:8000/v1/chat/completions; }
for _ in $(seq 1 120); do
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"model":"claude","messages":[{"role":"user","content":"warm"}],"max_tokens":4}' \
    http://127.0.0.1:8000/v1/chat/completions || true)
  [ "$code" = 200 ] && break
  sleep 1
done
for i in 1 2 3 4 5 6; do ask "{\"model\":\"claude\",\"messages\":[{\"role\":\"user\",\"content\":\"q$i\"}],\"max_tokens\":8}" >/dev/null; done
sleep 0.2
hits=0
for i in 1 2 3 4 5 6; do  # round-robin over 2 replicas: about half were answered by the other one
  ask "{\"model\":\"claude\",\"messages\":[{\"role\":\"user\",\"content\":\"q$i\"}],\"max_tokens\":8}" >/dev/null
  grep -qi "x-router-cache: hit-exact" "$TMP/h" && hits=$((hits + 1))
done
stream=$(curl -s -m 30 -N -H 'content-type: application/json' \
  -d '{"model":"claude","stream":true,"messages":[{"role":"user","content":"s"}],"max_tokens":8}' \
  http://127.0.0.1:8000/v1/chat/completions | grep -c '^data: ' || true)
error=$(ask '{"model":"claude","messages":[]}')
replicas=$(pgrep -fc "hybrid-router serve --config $TMP/router.yaml" || true)
spent=$("$PY" -c "
import redis; r = redis.Redis(port=$REDIS_PORT)
print(int(r.hget('smoke:budget:[\"tenant\",\"default\"]:spend:' + __import__('time').strftime('%Y-%m-%d', __import__('time').gmtime()), 'tok') or 0))")
echo "{\"router_processes\": $replicas, \"cache_hits_of_6\": $hits, \"sse_lines\": $stream, \"budget_tokens_in_redis\": $spent, \"error_body\": $error}"
[ "$replicas" = 2 ] && [ "$hits" = 6 ] && [ "$stream" -gt 2 ] && [ "$spent" -gt 0 ] && echo "$error" | grep -q invalid_request_error
