"""A native crash in the local engine ends only that engine's requests, with proper errors, and it comes back.

The llama.cpp engine runs in a worker process (router/engines/worker_main.py). These tests kill that process with
SIGSEGV mid-stream, as a crash in ggml would, and check what an operator and a client see: the stream ends with an
in-band error in its own API format, a concurrent frontier request completes, the server keeps answering,
/readyz says the local tier is down and then ready again, routed requests go to the frontier meanwhile, explicit
local ones get 503 / 529 with Retry-After, and after the restart local requests succeed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from router.app import REGISTRY
from router.config import load_settings
from tests.conftest import MODEL
from tests.fakes.frontier import FakeFrontier
from tests.support.server import ServerThread, running

pytestmark = pytest.mark.model

STORY = "Write a long story about a lighthouse keeper and a storm."
BACKOFF_S = 6.0  # the first restart waits this long: the window in which the local tier is observably down


@pytest.fixture(scope="module")
def crashy(fake: FakeFrontier, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("crash")
    (tmp / "key").write_text("sk-test-key\n")
    (tmp / "router.yaml").write_text(
        f"""
cache: {{enabled: false}}
models:
  - {{name: {MODEL}, n_ctx: 1024, n_parallel: 4, restart_backoff_s: {BACKOFF_S}}}
routing:
  rules: [{{name: everything-local, when: {{}}, tier: local}}]
frontier:
  models:
    - {{name: claude, provider: anthropic, model_id: slow, base_url: "{fake.url}", api_key_file: "{tmp / "key"}"}}
"""
    )
    with running(load_settings(tmp / "router.yaml", environ={})) as server:
        yield server


def _engine(server: ServerThread):
    return server.app[REGISTRY].engines[MODEL]


def _ready(server: ServerThread) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(server.base_url + "/readyz", timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def _wait_ready(server: ServerThread, within: float = 60.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        status, body = _ready(server)
        if status == 200:
            return body
        assert time.monotonic() < deadline, f"not ready again: {body}"
        time.sleep(0.1)


def _kill_worker_after(server: ServerThread, event: threading.Event) -> int:
    pid = _engine(server).engine.pid
    assert pid and pid != os.getpid()

    def kill() -> None:
        event.wait(30)
        os.kill(pid, signal.SIGSEGV)

    threading.Thread(target=kill, daemon=True).start()
    return pid


def test_segfault_mid_stream_is_contained(crashy: ServerThread) -> None:
    _wait_ready(crashy)
    base = crashy.base_url + "/v1"
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
    started = threading.Event()
    old_pid = _kill_worker_after(crashy, started)

    # A frontier stream runs concurrently (the fake's "slow" model: 50 ms per delta) and must complete.
    frontier_text: list[str] = []

    def frontier() -> None:
        stream = client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Plan a migration."}], stream=True
        )
        frontier_text.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    other = threading.Thread(target=frontier)
    other.start()

    received = 0
    with pytest.raises(openai.APIError) as ended:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": STORY}], max_tokens=400, stream=True
        )
        for _chunk in stream:
            received += 1
            if received == 3:
                started.set()  # the kill lands while tokens are flowing
    assert received >= 3
    assert "engine worker died" in str(ended.value) and "SIGSEGV" in str(ended.value)

    # The server lives: it answers, reports the local tier down, and the frontier stream finished.
    status, body = _ready(crashy)
    assert status == 503 and body["status"] == "degraded", body
    model = body["models"][MODEL]
    assert model["state"] == "down" and model["last_exit"] == "killed by SIGSEGV"
    other.join(30)
    assert "".join(frontier_text).startswith("Frontier answer about: Plan a migration.")

    # While down: a routed request goes to the frontier; an explicit local one is told to come back.
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Classify: I love it."}], max_tokens=8
    )
    assert raw.headers["x-router-tier"] == "frontier" and raw.headers["x-router-escalated"] == "local-down"
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert refused.value.status_code == 503 and refused.value.body["code"] == "local_tier_down"
    assert int(refused.value.response.headers["retry-after"]) >= 1

    # Back: a new worker process, the restart counted, and local answers again.
    body = _wait_ready(crashy)
    model = body["models"][MODEL]
    assert model["state"] == "up" and model["restarts"] >= 1 and model["pid"] != old_pid
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert answer.usage.completion_tokens == 3
    client.close()


def test_anthropic_stream_gets_an_in_band_error_event(crashy: ServerThread) -> None:
    _wait_ready(crashy)
    started = threading.Event()
    _kill_worker_after(crashy, started)
    client = anthropic.Anthropic(base_url=crashy.base_url, api_key="unused", max_retries=0, timeout=60)
    events: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as ended,
        client.messages.stream(model=MODEL, max_tokens=400, messages=[{"role": "user", "content": STORY}]) as stream,
    ):
        for event in stream:
            events.append(event.type)
            if events.count("content_block_delta") == 3:
                started.set()
    assert "message_start" in events and "message_stop" not in events
    assert ended.value.type == "overloaded_error" or "engine worker died" in str(ended.value)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 529
    _wait_ready(crashy)
    client.close()


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    """SIGSTOP freezes the worker (a wedged decode, a deadlock): heartbeats stop, the watchdog kills and restarts."""
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        f"cache: {{enabled: false}}\nembeddings: {{enabled: false}}\n"
        f"models: [{{name: {MODEL}, n_ctx: 512, n_parallel: 2, restart_backoff_s: 0.1, stall_timeout_s: 1.0}}]\n"
    )
    with running(load_settings(cfg, environ={})) as server:
        pid = _engine(server).engine.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while _engine(server).engine.pid == pid or not _engine(server).up:
            assert time.monotonic() < deadline, _engine(server).status()
            time.sleep(0.1)
        assert "stalled" in _engine(server).last_exit
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert answer.usage.completion_tokens == 2
        client.close()


def test_a_worker_that_cannot_start_is_reported_not_restarted(tmp_path: Path) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(f"embeddings: {{enabled: false}}\nmodels: [{{name: broken, path: {tmp_path / 'missing.gguf'}}}]\n")
    server = ServerThread(load_settings(cfg, environ={}))
    with pytest.raises(RuntimeError, match="GGUF file not found"):
        server.start()
    server.stop()
