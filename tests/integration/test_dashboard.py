"""The dashboard: its data endpoint over plain HTTP, behind the metrics rule, and the page in a real browser."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import openai
import orjson
import pytest

from router.config import load_settings
from tests.conftest import MODEL
from tests.support.keys import tenant_keys
from tests.support.server import running

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("dashboard")
    keys_file = tmp / "keys.yaml"
    keys = tenant_keys(keys_file, ("alpha", "beta", "ops"))
    (tmp / "router.yaml").write_text(
        f"""
embeddings: {{enabled: false}}
cache: {{semantic: false}}
accounting: {{ledger_path: "{tmp / "ledger.sqlite3"}"}}
auth: {{enabled: true, keys_file: "{keys_file}"}}
tenants:
  - {{name: ops, admin: true}}
"""
    )
    with running(load_settings(tmp / "router.yaml", environ={})) as server:
        for tenant, prompts in (("alpha", ["Say hi.", "Say hi.", "Say yes."]), ("beta", ["Say no."])):
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=keys[tenant], max_retries=0)
            for prompt in prompts:  # the repeated prompt is an exact cache hit
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=2, temperature=0
                )
        yield server, keys


def get(server, path: str, key: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(server.base_url + path, headers=headers)) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_data_shows_tier_mix_cache_latency_and_tenants(board) -> None:
    server, keys = board
    status, _, body = get(server, "/dashboard/data?minutes=10", keys["ops"])
    assert status == 200
    data = orjson.loads(body)
    alpha, beta = data["tenants"]["alpha"], data["tenants"]["beta"]
    assert (alpha["requests"], alpha["tiers"], alpha["errors"]) == (3, {"local": 3}, 0)
    assert alpha["cache"] == {"lookups": 3, "hits": 1, "hit_rate": round(1 / 3, 4)}
    assert beta["requests"] == 1 and data["all"]["requests"] == 4
    assert set(alpha["latency_ms"]["local"]) == {"p50", "p95", "p99"} and alpha["latency_ms"]["local"]["p50"] > 0
    assert data["all"]["all_frontier_usd"] > 0 and data["all"]["saved_usd"] >= 0
    assert data["live"]["in_flight"] == 0
    # The counterfactual is stated: which model's prices "saved" is measured against.
    assert data["counterfactual"]["input_usd_per_mtok"] == 15.0 and "reference" in data["counterfactual"]["model"]


def test_data_is_behind_the_metrics_rule_and_the_page_is_not(board) -> None:
    server, keys = board
    assert get(server, "/dashboard/data")[0] == 401
    status, _, body = get(server, "/dashboard/data", keys["alpha"])  # a tenant key sees no one's spend
    assert status == 403 and orjson.loads(body)["error"]["type"] == "permission_error"
    status, headers, page = get(server, "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/dashboard/data" in page and b"alpha" not in page  # the page holds no data


@pytest.mark.parametrize("minutes", ["abc", "0", "-5", "999999"])
def test_a_bad_window_is_a_400_naming_the_parameter(board, minutes: str) -> None:
    server, keys = board
    status, _, body = get(server, f"/dashboard/data?minutes={minutes}", keys["ops"])
    assert status == 400 and orjson.loads(body)["error"]["param"] == "minutes"


def _browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    return playwright, executable


def test_the_page_in_a_real_headless_browser(board) -> None:
    server, keys = board
    playwright, executable = _browser()
    with playwright.sync_playwright() as p:
        try:
            browser = p.chromium.launch(headless=True, executable_path=executable)
        except Exception as exc:  # no browser binary could be had on this machine
            pytest.skip(f"no headless Chromium here (apt-get install chromium, or playwright install): {exc}")
        try:
            page = browser.new_page()
            page.goto(server.base_url + "/dashboard")
            page.wait_for_selector("#auth", state="visible")  # refused without a key: the page asks for one
            page.fill("#key", keys["ops"])
            page.click("#auth button")
            page.wait_for_function("document.getElementById('requests').textContent !== '-'")
            assert int(page.text_content("#requests")) >= 4
            assert page.text_content("#local-share") == "100.0%"
            rows = page.query_selector_all("#tenants tbody tr")
            assert [r.get_attribute("data-tenant") for r in rows][:2] == ["alpha", "beta"]
            assert page.text_content("#error") == ""
            assert "Savings against all-frontier on reference prices" in page.text_content("#counterfactual")
        finally:
            browser.close()
