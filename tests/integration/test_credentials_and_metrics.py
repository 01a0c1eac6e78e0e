"""One credentials rule in both APIs, and /metrics private by default (issue 19, docs/resilience.md).

A request carrying one tenant's key as `Authorization: Bearer` and another's as `x-api-key` is refused with 401 in
the caller's format, stream or not; the same key in both is fine. With `metrics_public` at its default (false),
/metrics needs an admin key or the scrape token, and cost series carry no tenant names unless opted in.
"""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import orjson
import pytest

from router.config import load_settings
from tests.conftest import MODEL
from tests.support.keys import tenant_keys
from tests.support.server import running

pytestmark = pytest.mark.model

TOKEN = "scrape-token-0d1e2f"


def _keyed_server(tmp, extra: str = ""):
    keys_file = tmp / "keys.yaml"
    keys = tenant_keys(keys_file, ("alpha", "beta", "gamma", "delta", "ops"))
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "router.yaml").write_text(
        f"""
cache: {{enabled: false}}
embeddings: {{enabled: false}}
accounting: {{ledger_path: "{tmp / "ledger.sqlite3"}"}}
auth: {{enabled: true, keys_file: "{keys_file}", metrics_token_file: "{tmp / "token"}"{extra}}}
tenants:
  - {{name: ops, admin: true}}
"""
    )
    return running(load_settings(tmp / "router.yaml", environ={})), keys


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    context, keys = _keyed_server(tmp_path_factory.mktemp("creds"))
    with context as server:
        yield server, keys


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory):
    """The same, with tenant labels opted in."""
    context, keys = _keyed_server(tmp_path_factory.mktemp("labels"), ", metrics_tenant_labels: true")
    with context as server:
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


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_conflicting_credentials_are_refused_through_the_sdks(keyed, api: str, stream: bool) -> None:
    """What a client configured twice really sends: its SDK's key plus a default header carrying another."""
    server, keys = keyed
    messages = [{"role": "user", "content": "Hi"}]
    if api == "openai":
        client = openai.OpenAI(
            base_url=server.base_url + "/v1",
            api_key=keys["alpha"],
            default_headers={"x-api-key": keys["beta"]},
            max_retries=0,
        )
        with pytest.raises(openai.AuthenticationError) as caught:
            out = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, stream=stream)
            list(out) if stream else None
        assert caught.value.status_code == 401 and caught.value.code == "conflicting_credentials"
        return
    client = anthropic.Anthropic(
        base_url=server.base_url,
        api_key=keys["beta"],  # this SDK sends its key as Authorization: Bearer
        default_headers={"x-api-key": keys["alpha"]},
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError) as caught:
        out = client.messages.create(model=MODEL, messages=messages, max_tokens=2, stream=stream)
        list(out) if stream else None
    assert caught.value.status_code == 401 and "conflicting credentials" in caught.value.message


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_refused_conflict_books_nothing_and_usage_is_per_tenant(keyed, api: str, stream: bool) -> None:
    server, keys = keyed
    path, body = _chat(api, stream)
    usage = server.base_url + "/v1/router/usage"

    def requests_of(tenant: str) -> int:
        status, raw = call(usage, headers={"x-api-key": keys[tenant]})
        assert status == 200, raw
        return orjson.loads(raw)["totals"].get("requests", 0)

    before = {t: requests_of(t) for t in ("gamma", "delta")}
    both = {"Authorization": f"Bearer {keys['gamma']}", "x-api-key": keys["delta"], "anthropic-version": "2023-06-01"}
    assert call(server.base_url + path, "POST", both, body)[0] == 401
    assert {t: requests_of(t) for t in ("gamma", "delta")} == before  # neither tenant was served or booked
    one = {"x-api-key": keys["gamma"], "anthropic-version": "2023-06-01"}
    assert call(server.base_url + path, "POST", one, body)[0] == 200
    assert requests_of("gamma") == before["gamma"] + 1 and requests_of("delta") == before["delta"]


def test_usage_needs_a_key_and_shows_other_tenants_only_to_admins(keyed) -> None:
    server, keys = keyed
    usage = server.base_url + "/v1/router/usage"
    status, raw = call(usage)
    assert status == 401 and orjson.loads(raw)["error"]["type"] == "authentication_error"
    assert call(usage, headers={"Authorization": "Bearer not-a-key"})[0] == 401
    status, raw = call(usage + "?tenant=beta", headers={"Authorization": f"Bearer {keys['alpha']}"})
    assert status == 403 and orjson.loads(raw)["error"]["param"] == "tenant"
    assert call(usage + "?tenant=beta", headers={"Authorization": f"Bearer {keys['ops']}"})[0] == 200
    both = {"Authorization": f"Bearer {keys['ops']}", "x-api-key": keys["alpha"]}
    assert call(usage, headers=both)[0] == 401
    assert call(usage, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 401  # the scrape token is no tenant key


@pytest.mark.parametrize("path", ["/metrics", "/metrics?format=text", "/%6Detrics", "/debug/memory"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_metrics_and_debug_refuse_anonymous_and_tenant_keys(keyed, path: str, method: str) -> None:
    server, keys = keyed
    url = server.base_url + path
    assert call(url, method)[0] == 401
    assert call(url, method, {"Authorization": f"Bearer {keys['alpha']}"})[0] == 403  # a key, but not an admin's
    both = {"Authorization": f"Bearer {TOKEN}", "x-api-key": keys["alpha"]}
    assert call(url, method, both)[0] == 401
    # /debug/memory answers 404 unless tracemalloc traces: the point is that the guard let it through
    assert call(url, method, {"Authorization": f"Bearer {TOKEN}"})[0] in (200, 404)


def _serve_alpha(server, keys) -> None:
    path, body = _chat("openai", False)
    status, raw = call(server.base_url + path, "POST", {"Authorization": f"Bearer {keys['alpha']}"}, body)
    assert status == 200, raw


def test_metrics_are_private_by_default(keyed) -> None:
    server, keys = keyed
    _serve_alpha(server, keys)
    url = server.base_url + "/metrics"
    assert call(url)[0] in (401, 403)
    assert call(url, headers={"Authorization": f"Bearer {keys['alpha']}"})[0] in (401, 403)  # not an admin
    status, raw = call(url, headers={"Authorization": f"Bearer {keys['ops']}"})
    assert status == 200 and b"router_" in raw
    status, raw = call(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    # Spend is not labelled by tenant name unless metrics_tenant_labels is on.
    assert b'router_saved_usd_total{tenant="all"}' in raw and b'router_cost_usd_total{tenant="all",tier="local"}' in raw
    assert b'tenant="alpha"' not in raw and b'tenant="beta"' not in raw


def test_tenant_labels_are_opt_in(labelled) -> None:
    server, keys = labelled
    _serve_alpha(server, keys)
    status, raw = call(server.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert b'router_saved_usd_total{tenant="alpha"}' in raw and b'tenant="all"' not in raw
