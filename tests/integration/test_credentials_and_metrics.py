"""One credentials rule in both APIs, and /metrics private by default (issue 19, docs/resilience.md).

A request carrying one tenant's key as `Authorization: Bearer` and another's as `x-api-key` is refused with 401 in
the caller's format, stream or not; the same key in both is fine. With `metrics_public` at its default (false),
/metrics needs an admin key or the scrape token, and cost series carry no tenant names unless opted in.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from router.accounting.keys import append_key, new_key
from router.config import load_settings
from tests.conftest import MODEL
from tests.support.server import running

pytestmark = pytest.mark.model

TOKEN = "scrape-token-0d1e2f"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("creds")
    keys_file = tmp / "keys.yaml"
    keys = {}
    for tenant in ("alpha", "beta", "ops"):
        key, stored = new_key(tenant)
        append_key(keys_file, stored)
        keys[tenant] = key
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "router.yaml").write_text(
        f"""
cache: {{enabled: false}}
embeddings: {{enabled: false}}
auth: {{enabled: true, keys_file: "{keys_file}", metrics_token_file: "{tmp / "token"}"}}
tenants:
  - {{name: ops, admin: true}}
"""
    )
    with running(load_settings(tmp / "router.yaml", environ={})) as server:
        yield server, keys


async def _call(url: str, method: str, headers: dict[str, str], body: dict | None = None):
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, json=body) as r:
        return r.status, await r.read()


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: dict | None = None):
    return asyncio.run(_call(url, method, headers or {}, body))


def _chat(api: str, stream: bool) -> tuple[str, dict]:
    messages = [{"role": "user", "content": "Hi"}]
    if api == "openai":
        return "/v1/chat/completions", {"model": MODEL, "messages": messages, "max_tokens": 2, "stream": stream}
    return "/v1/messages", {"model": MODEL, "messages": messages, "max_tokens": 2, "stream": stream}


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_conflicting_credentials_are_refused(keyed, api: str, stream: bool) -> None:
    server, keys = keyed
    path, body = _chat(api, stream)
    url = server.base_url + path
    both = {"Authorization": f"Bearer {keys['alpha']}", "x-api-key": keys["beta"], "anthropic-version": "2023-06-01"}
    status, raw = call(url, "POST", both, body)
    assert status == 401, raw
    payload = orjson.loads(raw)
    if api == "anthropic":
        assert payload["type"] == "error" and payload["error"]["type"] == "authentication_error"
    else:
        assert payload["error"]["code"] == "conflicting_credentials"
    same = {"Authorization": f"Bearer {keys['alpha']}", "x-api-key": keys["alpha"], "anthropic-version": "2023-06-01"}
    status, raw = call(url, "POST", same, body)
    assert status == 200, raw
    for one in ({"Authorization": f"Bearer {keys['beta']}"}, {"x-api-key": keys["beta"]}):
        status, raw = call(url, "POST", {**one, "anthropic-version": "2023-06-01"}, body)
        assert status == 200, raw


def test_metrics_are_private_by_default(keyed) -> None:
    server, keys = keyed
    url = server.base_url + "/metrics"
    assert call(url)[0] in (401, 403)
    assert call(url, headers={"Authorization": f"Bearer {keys['alpha']}"})[0] in (401, 403)  # not an admin
    status, raw = call(url, headers={"Authorization": f"Bearer {keys['ops']}"})
    assert status == 200 and b"router_" in raw
    status, raw = call(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    # Spend is not labelled by tenant name unless metrics_tenant_labels is on.
    assert b'tenant="alpha"' not in raw and b'tenant="beta"' not in raw
