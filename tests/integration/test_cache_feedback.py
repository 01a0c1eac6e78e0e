"""`POST /v1/cache/feedback` through the real server: two tenants with keys, the openai SDK, real SmolLM2 and
the real embedding model. Feedback reaches only the caller's own hits; bad bodies are 400s in the OpenAI format."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import orjson
import pytest

from router.app import CACHE
from router.config import load_settings
from tests.conftest import MODEL
from tests.support.cache import wait_ready
from tests.support.keys import tenant_keys
from tests.support.server import running

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("feedback")
    keys_file = tmp / "keys.yaml"
    keys = tenant_keys(keys_file, ("alpha", "beta"))
    (tmp / "router.yaml").write_text(
        f"""
cache: {{similarity_threshold: 0.9, explore_rate: 0}}
auth: {{enabled: true, keys_file: "{keys_file}"}}
"""
    )
    with running(load_settings(tmp / "router.yaml", environ={})) as server:
        wait_ready(server.base_url)
        yield server, keys


def feedback(server, key: str, body: object) -> tuple[int, dict]:
    async def post() -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with (
            aiohttp.ClientSession() as s,
            s.post(server.base_url + "/v1/cache/feedback", data=data, headers=headers) as r,
        ):
            return r.status, await r.read()

    status, raw = asyncio.run(post())
    return status, orjson.loads(raw)


def ask(server, key: str, prompt: str):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=4, temperature=0
    )
    server.call(server.app[CACHE].flush())
    return raw.headers, raw.parse()


def test_feedback_reaches_only_the_callers_own_hit(keyed) -> None:
    server, keys = keyed
    ask(server, keys["alpha"], "What is the capital of Portugal?")
    headers, completion = ask(server, keys["alpha"], "Which city is the capital of Portugal?")
    assert headers["x-router-cache"] == "hit-semantic"
    for body in (
        {"request_id": completion.id, "correct": False},
        {"entry_id": headers["x-router-cache-entry"], "correct": False},
    ):
        status, error = feedback(server, keys["beta"], body)
        assert status == 404 and error["error"]["type"] == "not_found_error", error
    status, got = feedback(server, keys["alpha"], {"request_id": headers["x-request-id"], "correct": True})
    assert status == 200 and got["object"] == "cache.feedback" and got["entry_id"] == headers["x-router-cache-entry"]
    status, got = feedback(server, keys["alpha"], {"request_id": completion.id, "correct": True})  # chatcmpl-… too
    assert status == 200 and got["similarity"] == pytest.approx(float(headers["x-router-cache-similarity"]), abs=1e-4)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"", None),
        (b"{not json", None),
        ([1, 2], "body"),
        ({"correct": True}, "request_id"),  # neither id
        ({"request_id": "a", "entry_id": "b", "correct": False}, "request_id"),  # both
        ({"request_id": "a"}, "correct"),
        ({"request_id": "a", "correct": "yes"}, "correct"),
        ({"request_id": 7, "correct": True}, "request_id"),
        ({"request_id": "", "correct": True}, "request_id"),
        ({"entry_id": "00ff", "correct": True}, "correct"),  # an entry can only be reported wrong
        ({"request_id": "a", "correct": True, "comment": "x"}, "comment"),
    ],
)
def test_bad_bodies_are_400_in_the_openai_format(keyed, body: object, param: str | None) -> None:
    server, keys = keyed
    status, error = feedback(server, keys["alpha"], body)
    assert status == 400, error
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["message"]
    if param is not None:
        assert error["error"]["param"] == param
