"""`hybrid-router serve --workers N`: N processes on one port (SO_REUSEPORT), all answering, all stopping cleanly."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready")


def test_two_workers_share_one_port_and_stop_cleanly(tmp_path: Path) -> None:
    mock_port = _free_port()
    mock = subprocess.Popen([sys.executable, "-m", "router.bench.mock", "--port", str(mock_port)])
    config = tmp_path / "router.yaml"
    config.write_text(
        f"""models:
  - name: mock
    engine: openai_http
    base_url: http://127.0.0.1:{mock_port}/v1
    upstream_model: mock
    api_key_env: null
cache: {{enabled: false}}
embeddings: {{enabled: false}}
accounting: {{ledger_path: ""}}
"""
    )
    proc = None
    try:
        _wait(f"http://127.0.0.1:{mock_port}/v1/models")
        argv = [sys.executable, "-m", "router.cli", "serve", "--config", str(config), "--port", "0", "--workers", "2"]
        errors = (tmp_path / "stderr").open("w")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        # One whole line per worker: two workers writing one stream must not interleave their lines.
        lines = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        found = [re.fullmatch(r"hybrid-router \S+ serving on (\S+) .*\n", line) for line in lines]
        assert all(found), (lines, (tmp_path / "stderr").read_text())
        urls = {m.group(1) for m in found if m}
        assert len(urls) == 1, urls  # both workers on the same address
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        url = urls.pop()
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        for _ in range(6):
            answer = client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": "hi"}], max_tokens=8
            )
            assert answer.choices[0].message.content
        proc.send_signal(signal.SIGTERM)  # forwarded to both workers, each drains and exits
        assert proc.wait(30) == 0
        assert all(not Path(f"/proc/{c}").exists() or "Z" in Path(f"/proc/{c}/stat").read_text() for c in children)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        mock.terminate()
        mock.wait(10)
