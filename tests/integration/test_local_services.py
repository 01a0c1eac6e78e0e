"""Rerank and transcription models in /v1/models, /readyz and /metrics, with the real MiniLM and Whisper tiny.en."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from router.config import Settings
from tests.support.server import running

pytestmark = pytest.mark.model
pytest.importorskip("faster_whisper", reason="the [audio] extra is not installed")

JFK = Path(__file__).parents[1] / "data" / "audio" / "jfk.wav"  # public domain: see tests/data/audio/README.md


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ready(base_url: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        status, body = get(base_url + "/readyz")
        if status == 200 or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rerank_and_transcription_are_listed_ready_and_counted() -> None:
    settings = Settings(transcription={"enabled": True}, cache={"enabled": False})
    with running(settings) as server:
        body = ready(server.base_url)
        assert body["status"] == "ready"
        assert body["models"][settings.rerank.name] == {"kind": "rerank", "state": "ready"}
        assert body["models"][settings.transcription.name] == {"kind": "transcription", "state": "ready"}

        _, models = get(server.base_url + "/v1/models")
        listed = {m["id"]: m.get("kind") for m in models["data"]}
        assert listed[settings.rerank.name] == "rerank"
        assert listed[settings.transcription.name] == "transcription" and listed["whisper-1"] == "transcription"
        assert settings.local_model in listed  # the chat models are still there

        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        with JFK.open("rb") as f:
            assert "country" in client.audio.transcriptions.create(model="whisper-1", file=f).text
        rerank = urllib.request.Request(
            server.base_url + "/v1/rerank",
            data=json.dumps(
                {"query": "capital of France", "documents": ["Paris is in France.", "Cats purr."]}
            ).encode(),
            headers={"content-type": "application/json"},
        )
        for _ in range(2):
            with urllib.request.urlopen(rerank, timeout=30) as r:
                assert json.loads(r.read())["results"][0]["index"] == 0
        bad = urllib.request.Request(server.base_url + "/v1/rerank", data=b'{"query": ""}')
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=30)
        assert err.value.code == 400

        with urllib.request.urlopen(server.base_url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        rr = {"endpoint": "/v1/rerank", "tier": "local", "task": "rerank"}
        assert metric(text, "router_requests_total", **rr, status="200") == 2
        assert metric(text, "router_requests_total", **rr, status="400") == 1
        tr = {"endpoint": "/v1/audio/transcriptions", "tier": "local", "task": "transcription", "status": "200"}
        assert metric(text, "router_requests_total", **tr) == 1
        seconds = metric(text, "router_service_duration_seconds_sum", endpoint="/v1/audio/transcriptions")
        assert seconds > 0
        assert metric(text, "router_service_duration_seconds_count", endpoint="/v1/rerank") == 3
        assert not re.search(r'router_request_duration_seconds_count\{tier="local"\} [1-9]', text)  # chat only


def test_a_failed_transcription_model_makes_readyz_report_it(tmp_path: Path) -> None:
    settings = Settings(
        transcription={"enabled": True, "path": str(tmp_path)},  # no model.bin there: it fails to load
        embeddings={"enabled": False},
        rerank={"enabled": False},
        cache={"enabled": False},
    )
    with running(settings) as server:
        deadline = time.monotonic() + 60
        while True:
            status, body = get(server.base_url + "/readyz")
            if body.get("models", {}).get(settings.transcription.name, {}).get("state") == "failed":
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        assert status == 503 and body["status"] == "failed"
        assert settings.transcription.name in body["failures"]
        _, models = get(server.base_url + "/v1/models")
        assert {m["id"]: m.get("kind") for m in models["data"]}[settings.transcription.name] == "transcription"
