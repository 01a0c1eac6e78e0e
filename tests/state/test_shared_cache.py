"""The response cache shared through Redis between two real servers (real SmolLM2, real MiniLM, real hnswlib):
an answer stored on replica A is an exact hit on replica B, and its paraphrase a semantic hit there."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from router.app import CACHE
from router.config import Settings, StateSettings
from tests.conftest import MODEL
from tests.support.cache import wait_ready
from tests.support.redis_server import RedisServer
from tests.support.server import ServerThread, running

pytestmark = pytest.mark.model


def ask(srv: ServerThread, prompt: str) -> tuple[str, str]:
    client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=4, temperature=0
    )
    srv.call(srv.app[CACHE].flush())
    return raw.headers["x-router-cache"], raw.parse().choices[0].message.content or ""


def test_an_answer_on_replica_a_is_a_hit_on_replica_b(redis_server: RedisServer) -> None:
    settings = Settings(state=StateSettings(url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}:"))
    with running(settings) as a, running(settings) as b:
        wait_ready(a.base_url)
        wait_ready(b.base_url)
        status, text = ask(a, "What is the capital of Italy?")
        assert status == "miss"
        deadline = time.monotonic() + 10
        while len(b.app[CACHE]) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ask(b, "What is the capital of Italy?") == ("hit-exact", text)
        assert ask(b, "what's the capital of italy") == ("hit-semantic", text)
        assert b.app[CACHE].replicator.absorbed == 1
        # B's own answer travels the other way.
        status, text_b = ask(b, "Name a primary colour.")
        assert status == "miss"
        deadline = time.monotonic() + 10
        while len(a.app[CACHE]) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ask(a, "Name a primary colour.") == ("hit-exact", text_b)
