"""Upstream error bodies never reach the client: a canary key through every error path of every provider.

The fake frontier's `echo` behaviour puts the credentials and the request body it received into its error messages
(as real APIs do with key fragments in 401s, and proxies with more). Whatever the status, stream or not, OpenAI or
Anthropic ingress, the client must see a well-formed error with the upstream's status and type, and no trace of the
key, nor of the upstream's text; the logs must not carry the key either.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import orjson
import pytest

from router.config import load_settings
from tests.fakes.frontier import FakeFrontier
from tests.support.server import ServerThread, running

pytestmark = pytest.mark.model

CANARY = "sk-canary-7f3a9c1e5b2d4f60a8e1"
MARKER = "PROMPT-MARKER-4242"
FAULTS = [
    "echo_error_400",
    "echo_error_401",
    "echo_error_403",
    "echo_error_404",
    "echo_error_413",
    "echo_error_429",
    "echo_error_500",
    "echo_error_529",
    "echo_stream_error_after_2",
]
PROVIDERS = ["anthropic", "openai"]


@pytest.fixture(scope="module")
def leaky(fake: FakeFrontier, tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("leaks")
    key = tmp / "key"
    key.write_text(CANARY + "\n")
    lines = [
        "cache: {enabled: false}",
        "embeddings: {enabled: false}",
        "frontier:",
        "  resilience: {max_retries: 1, backoff_base_s: 0.01, backoff_max_s: 0.05}",
        "  models:",
    ]
    for provider in PROVIDERS:
        base = fake.url if provider == "anthropic" else fake.url + "/v1"
        for fault in FAULTS:
            lines.append(
                f'    - {{name: "{provider}-{fault}", provider: {provider}, model_id: {fault}, base_url: "{base}", '
                f'api_key_file: "{key}", fallback_to_local: false}}'
            )
    (tmp / "router.yaml").write_text("\n".join(lines) + "\n")
    with running(load_settings(tmp / "router.yaml", environ={})) as server:
        yield server


async def _call(base_url: str, path: str, body: dict) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.post(base_url + path, json=body) as r:
        return r.status, dict(r.headers), await r.read()


def _body(api: str, model: str, stream: bool) -> tuple[str, dict]:
    messages = [{"role": "user", "content": f"Tell me about {MARKER} please."}]
    if api == "openai":
        return "/v1/chat/completions", {"model": model, "messages": messages, "stream": stream, "max_tokens": 20}
    return "/v1/messages", {"model": model, "messages": messages, "stream": stream, "max_tokens": 20}


def _fragments(secret: str) -> list[str]:
    return [secret[i : i + 8] for i in range(len(secret) - 7)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_no_upstream_error_text_reaches_the_client(
    leaky: ServerThread, provider: str, api: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="router")
    for fault in FAULTS:
        path, body = _body(api, f"{provider}-{fault}", stream)
        status, headers, raw = asyncio.run(_call(leaky.base_url, path, body))
        seen = raw.decode("utf-8", "replace") + " ".join(f"{k}: {v}" for k, v in headers.items())
        for frag in _fragments(CANARY):
            assert frag not in seen, f"{fault}: key fragment {frag!r} reached the client: {seen[:400]}"
        assert "request had" not in seen and MARKER not in seen, f"{fault}: upstream text reached the client: {seen}"
        if status >= 400:
            err = orjson.loads(raw)["error"]
            assert err["message"] and err["type"], raw
            if api == "anthropic":
                assert orjson.loads(raw)["type"] == "error"
        else:  # the failure came after the stream started: an in-band error event ends it
            assert stream and (b'"error"' in raw), raw
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for frag in _fragments(CANARY):
        assert frag not in logged, f"key fragment {frag!r} in the logs"


def test_statuses_keep_their_meaning(leaky: ServerThread) -> None:
    """Sanitised, not flattened: the client still learns what kind of failure it was."""
    expected = {"echo_error_400": 400, "echo_error_413": 413, "echo_error_429": 429, "echo_error_401": 502}
    for fault, status in expected.items():
        path, body = _body("openai", f"openai-{fault}", False)
        got, _, raw = asyncio.run(_call(leaky.base_url, path, body))
        assert got == status, (fault, raw)
        assert "the upstream answered" in orjson.loads(raw)["error"]["message"] or got == 429
