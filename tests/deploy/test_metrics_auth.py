"""/metrics behind its scrape token in every deployment recipe (issue 19): compose, the Prometheus configs and the
Helm chart hand the router and its scraper the same token, and a real Prometheus scrapes a real router with it.

The router side (`auth.metrics_token_file`, private by default) is tested in
tests/integration/test_credentials_and_metrics.py; these check that deploy/ wires it up.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from router.config import Settings, load_settings
from tests.deploy.test_deploy_files import CHART, DEPLOY, _Helm, _load, _one, _run, _tool

COMPOSE_TOKEN_ENV = "HYBRID_ROUTER_AUTH__METRICS_TOKEN_FILE"


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target → (source, read-only) of a compose service's short-syntax volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        out[target] = (source, mode == ["ro"])
    return out


def _job(path: Path) -> dict[str, Any]:
    return next(j for j in _load(path)["scrape_configs"] if j["job_name"] == "hybrid-router")


# -- compose ----------------------------------------------------------------------------------------------------


def test_compose_gives_router_and_prometheus_the_same_token_file() -> None:
    services = _load(DEPLOY / "compose.yaml")["services"]
    token = services["router"]["environment"][COMPOSE_TOKEN_ENV]
    folder = str(PurePosixPath(token).parent)
    writer = services["metrics-token"]
    volume, _ = _mounts(writer)[folder]
    assert token in writer["command"][0]

    router_source, router_ro = _mounts(services["router"])[folder]
    assert router_source == volume and router_ro
    credentials = _job(DEPLOY / "prometheus" / "prometheus.yml")["authorization"]
    assert credentials.get("type", "Bearer") == "Bearer"
    prom_source, prom_ro = _mounts(services["prometheus"])[str(PurePosixPath(credentials["credentials_file"]).parent)]
    assert prom_source == volume and prom_ro
    assert PurePosixPath(credentials["credentials_file"]).name == PurePosixPath(token).name
    for name in ("router", "prometheus"):  # neither starts before the token exists
        assert services[name]["depends_on"]["metrics-token"]["condition"] == "service_completed_successfully"


def test_compose_token_writer_makes_one_token_and_keeps_it(tmp_path: Path) -> None:
    """The init service's own shell line, run here against a scratch folder (busybox and coreutils agree)."""
    if shutil.which("sh") is None or shutil.which("od") is None:
        pytest.skip("needs sh and od")
    services = _load(DEPLOY / "compose.yaml")["services"]
    token = services["router"]["environment"][COMPOSE_TOKEN_ENV]
    script = services["metrics-token"]["command"][0].replace(str(PurePosixPath(token).parent), str(tmp_path))
    subprocess.run(["sh", "-c", script], check=True, timeout=30)
    first = (tmp_path / "token").read_text()
    assert len(first) == 64 and int(first, 16) >= 0  # 32 random bytes in hex, no newline
    subprocess.run(["sh", "-c", script], check=True, timeout=30)
    assert (tmp_path / "token").read_text() == first  # a restart keeps the token the router already read


def test_compose_keeps_prometheus_and_the_dashboard_behind_a_login() -> None:
    """Prometheus (no login of its own) holds every series it scraped and Grafana shows the spend: this host only,
    no anonymous viewers, and no default admin password."""
    services = _load(DEPLOY / "compose.yaml")["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["ports"] and all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    password = grafana["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), password  # compose refuses to start without one
    assert services["router"]["ports"] == ["8080:8080"]  # the API itself stays reachable


def test_compose_router_config_loads_with_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t" * 64)
    env = {"HYBRID_ROUTER_SERVER__HOST": "0.0.0.0", COMPOSE_TOKEN_ENV: str(tmp_path / "token")}
    settings = load_settings(DEPLOY / "config" / "router.yaml", environ=env)
    assert settings.auth.metrics_token_file == str(tmp_path / "token") and not settings.auth.metrics_public


# -- Helm -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [{}, {"existingSecret": "ops-metrics-token", "key": "bearer"}, {"enabled": False}],
    ids=["chart-secret", "existing-secret", "off"],
)
def test_chart_scrape_token(token: dict[str, Any], tmp_path: Path) -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True}, "scrapeToken": token}}
    helm = _Helm()
    assert helm.lint(values, tmp_path) == []
    docs = helm.render(values, tmp_path)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    endpoint = _one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}

    if token.get("enabled") is False:
        assert COMPOSE_TOKEN_ENV not in env and "authorization" not in endpoint
        assert not [v for v in pod["volumes"] if v["name"] == "metrics-token"]
        return
    key = token.get("key", "token")
    path = PurePosixPath(env[COMPOSE_TOKEN_ENV])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert mount["readOnly"] and path.name == key
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
    assert volume["items"] == [{"key": key, "path": key}]
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials"] == {"name": volume["secretName"], "key": key}  # what the router reads, it sends
    if token.get("existingSecret"):
        assert volume["secretName"] == token["existingSecret"] and token["existingSecret"] not in secrets
    else:
        made = secrets[volume["secretName"]]
        assert len(base64.b64decode(made["data"][key])) >= 32
    # The router loads the ConfigMap with the env the pod gets, and then needs the token for /metrics.
    (tmp_path / "router.yaml").write_text(_one(docs, "ConfigMap")["data"]["router.yaml"])
    settings = load_settings(tmp_path / "router.yaml", environ={k: v for k, v in env.items() if v is not None})
    assert settings.auth.metrics_token_file == str(path) and not settings.auth.metrics_public


def test_chart_default_has_the_token_on(tmp_path: Path) -> None:
    docs = _Helm().render({}, tmp_path)
    env = {e["name"] for e in _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert COMPOSE_TOKEN_ENV in env
    assert _load(CHART / "values.yaml")["metrics"]["scrapeToken"]["enabled"] is True


# -- Prometheus configs -----------------------------------------------------------------------------------------


def test_kubernetes_pods_job_sends_the_token_and_keeps_only_router_pods(tmp_path: Path) -> None:
    job = _job(DEPLOY / "prometheus" / "kubernetes-pods.yml")
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    app = next(r for r in keep if r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"])
    assert app["regex"] == _load(CHART / "Chart.yaml")["name"]  # the chart's app.kubernetes.io/name
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    # Debian's Prometheus is built without Kubernetes discovery: check the rest (auth, relabelling) on a static target.
    (tmp_path / "token").write_text("scrape-token\n")
    job = {**job, "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")}}
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [job]}))
    result = _run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real Prometheus against a real router ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(prometheus: str) -> dict[str, float]:
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": "up"})
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.load(r)["data"]["result"]
    return {s["metric"]["job"]: float(s["value"][1]) for s in result}


@pytest.mark.model
def test_prometheus_scrapes_the_router_with_the_shipped_job(tmp_path: Path) -> None:
    """deploy/prometheus/prometheus.yml's job, pointed at a real router: with the token it is up; the same job
    without it, or with another token, is refused (up == 0)."""
    binary = _tool("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    from tests.support.server import running

    token = tmp_path / "token"
    token.write_text("deploy-scrape-token-5f3a\n")  # a trailing newline, as `echo` and editors leave
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    settings = Settings.model_validate(
        {"cache": {"enabled": False}, "embeddings": {"enabled": False}, "auth": {"metrics_token_file": str(token)}}
    )
    with running(settings) as router:
        target = router.base_url.removeprefix("http://")
        shipped = _job(DEPLOY / "prometheus" / "prometheus.yml")
        jobs = []
        for name, auth in (("hybrid-router", str(token)), ("wrong-token", str(wrong)), ("no-token", None)):
            job = {**shipped, "job_name": name, "static_configs": [{"targets": [target]}]}
            job["scrape_interval"] = job["scrape_timeout"] = "1s"
            if auth is None:
                job.pop("authorization")
            else:
                job["authorization"] = {**shipped["authorization"], "credentials_file": auth}
            jobs.append(job)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": jobs}))
        port = _free_port()
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            up: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(up) < 3:
                time.sleep(0.5)
                try:
                    up = _up(f"http://127.0.0.1:{port}")
                except OSError:
                    continue  # still starting
            assert up == {"hybrid-router": 1.0, "wrong-token": 0.0, "no-token": 0.0}, up
        finally:
            proc.terminate()
            proc.wait(30)
