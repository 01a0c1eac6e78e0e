"""Context compression before the frontier, end to end: real server, real SmolLM2 tokenizer, real MiniLM, the
official openai and anthropic SDKs, and the fake frontier recording what it was sent."""

from __future__ import annotations

import json
import time
import urllib.request

import anthropic
import openai
import pytest

from router.config import load_settings
from tests.fakes.frontier import FakeFrontier
from tests.support.server import running

pytestmark = pytest.mark.model

TOPICS = [
    ("canteen", "The canteen menu rotates weekly; soups are vegetarian on Mondays and fish is served on Fridays."),
    ("parking", "Parking permits are renewed every January, and the north car park closes at ten in the evening."),
    ("printers", "The third-floor printers jam with heavy paper, so facilities asked staff to use the second floor."),
    ("football", "The company football team lost the regional final on penalties after a goalless draw."),
    ("garden", "Volunteers planted forty tulip bulbs by the entrance and will water them on Thursdays."),
    ("library", "The library now lends laptops for a week; late returns block borrowing for a month."),
    ("travel", "Travel claims need receipts in euros, and train tickets must be second class under four hours."),
    ("choir", "The staff choir rehearses Wednesdays at noon and is learning three carols for December."),
    ("bicycles", "A new bicycle shed with sixty racks opened beside the loading bay, with a pump and tools."),
    ("coffee", "The coffee machine on floor two was descaled, and oat milk is now stocked in the fridge."),
    ("elevators", "Elevator B is inspected on the first Tuesday of each month between seven and nine."),
    ("badges", "Lost badges cost fifteen euros to replace and are printed at reception within one day."),
]
ANSWER = (
    "Pump maintenance: the reactor's primary coolant pump was replaced on 14 March 2021 by the engineer "
    "Ingrid Halvorsen, after vibration sensors showed bearing wear."
)
CODE = "```python\ndef coolant_ok(flow: float) -> bool:\n\n    return flow > 12.5\n```\n"
QUESTION = "Who replaced the reactor's coolant pump, and on what date?"


def document() -> str:
    """A plant newsletter (~1,800 SmolLM2 tokens): many unrelated paragraphs, one that answers the question."""
    parts = ["# Plant newsletter, spring edition\n\nThis issue collects notes from every department of the plant.\n\n"]
    for round_ in range(4):
        for name, text in TOPICS:
            parts.append(f"{name.title()} (note {round_ + 1}): {text} Questions go to the {name} desk.\n\n")
        if round_ == 2:
            parts.append(ANSWER + "\n\n")
            parts.append(CODE + "\n")
    return "".join(parts)


def start(fake: FakeFrontier, tmp_path, compression: str):
    key = tmp_path / "key"
    key.write_text("k")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(
        "cache: {enabled: false}\n"
        "frontier:\n"
        "  models:\n"
        f'    - {{name: claude, provider: anthropic, model_id: ok, base_url: "{fake.url}", api_key_file: "{key}"}}\n'
        f"  compression: {compression}\n"
    )
    return running(load_settings(cfg, environ={}))


def wait_ready(base_url: str) -> None:
    """The embedding model loads in the background; without it chunks are ranked by word overlap."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("router not ready within 60 s")
        time.sleep(0.2)


SMALL = "{budget_tokens: 600, min_tokens: 300, chunk_tokens: 80, keep_first: 1}"


def check_shortened(text: str, doc: str) -> None:
    assert len(text) < len(doc) / 2
    assert ANSWER in text  # the passage that answers the question survived, whole
    assert CODE in text  # code blocks are never cut
    assert text.startswith("# Plant newsletter, spring edition\n\nThis issue collects")  # first chunk kept
    assert "tokens omitted …]" in text
    omitted = [p for p in doc.split("\n\n") if p.strip() and p not in text]
    assert len(omitted) > 20  # most unrelated notes are gone


def test_openai_client_long_document_reaches_the_frontier_shortened(fake, tmp_path) -> None:
    doc = document()
    with start(fake, tmp_path, SMALL) as server:
        wait_ready(server.base_url)
        fake.reset()
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="claude", max_tokens=20, messages=[{"role": "user", "content": doc + QUESTION}]
        )
        before, after = (int(n) for n in raw.headers["x-router-compressed"].removesuffix(" tokens").split("->"))
        assert before > 1500 and after <= 600 + 40  # the budget, give or take the markers' rounding
        detail = raw.headers["x-router-compression"]
        assert detail.startswith("extractive; chunks ") and "tokenizer smollm2" in detail and "scorer minilm" in detail
        assert raw.parse().choices[0].message.content.startswith("Frontier answer about:")
        sent = fake.requests[-1].body["messages"]
        text = sent[-1]["content"][0]["text"]
        check_shortened(text, doc)
        assert text.endswith("\n\n" + QUESTION)  # the question verbatim, last
        with urllib.request.urlopen(server.base_url + "/metrics") as r:
            metrics = r.read().decode()
        assert 'router_compression_requests_total{outcome="compressed"} 1.0' in metrics
        assert f'router_compression_tokens_total{{stage="before"}} {float(before)}' in metrics
        assert f'router_compression_tokens_total{{stage="after"}} {float(after)}' in metrics


def test_anthropic_client_document_in_the_system_prompt_is_shortened(fake, tmp_path) -> None:
    doc = document()
    with start(fake, tmp_path, SMALL) as server:
        wait_ready(server.base_url)
        fake.reset()
        client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)
        with client.messages.stream(
            model="claude", max_tokens=20, system=doc, messages=[{"role": "user", "content": QUESTION}]
        ) as stream:
            text = "".join(stream.text_stream)
            headers = stream.response.headers
        assert text.startswith("Frontier answer about: Who replaced")
        assert "->" in headers["x-router-compressed"]
        body = fake.requests[-1].body
        system = body["system"] if isinstance(body["system"], str) else body["system"][0]["text"]
        check_shortened(system, doc)
        assert body["messages"][-1]["content"][0]["text"] == QUESTION


def test_short_requests_and_tool_results_are_untouched(fake, tmp_path) -> None:
    doc = document()
    with start(fake, tmp_path, SMALL) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
        fake.reset()
        raw = client.chat.completions.with_raw_response.create(
            model="claude", max_tokens=20, messages=[{"role": "user", "content": "Name a colour."}]
        )
        assert "x-router-compressed" not in raw.headers
        assert fake.requests[-1].body["messages"][-1]["content"][0]["text"] == "Name a colour."
        # Over the budget, but the long part is a tool result: there is nothing compression may cut.
        call = {"id": "call_1", "type": "function", "function": {"name": "read_doc", "arguments": "{}"}}
        raw = client.chat.completions.with_raw_response.create(
            model="claude",
            max_tokens=20,
            messages=[
                {"role": "user", "content": "Read the newsletter."},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": doc},
                {"role": "user", "content": QUESTION},
            ],
        )
        assert "x-router-compressed" not in raw.headers
        sent = json.dumps(fake.requests[-1].body)
        assert json.dumps(doc)[1:-1] in sent  # the tool result went out whole


def test_disabled_compression_sends_the_document_whole(fake, tmp_path) -> None:
    doc = document()
    with start(fake, tmp_path, "{enabled: false}") as server:
        fake.reset()
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="claude", max_tokens=20, messages=[{"role": "user", "content": doc + QUESTION}]
        )
        assert "x-router-compressed" not in raw.headers
        assert fake.requests[-1].body["messages"][-1]["content"][0]["text"] == doc + QUESTION


def test_summary_strategy_puts_the_local_models_summary_in_the_gaps(fake, tmp_path) -> None:
    cfg = (
        "{budget_tokens: 600, min_tokens: 300, chunk_tokens: 80, strategy: extractive+summary, summary_max_tokens: 24}"
    )
    doc = document()
    with start(fake, tmp_path, cfg) as server:
        wait_ready(server.base_url)
        fake.reset()
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        raw = client.chat.completions.with_raw_response.create(
            model="claude", max_tokens=20, messages=[{"role": "user", "content": doc + QUESTION}]
        )
        assert raw.headers["x-router-compression"].startswith("extractive+summary; ")
        text = fake.requests[-1].body["messages"][-1]["content"][0]["text"]
        assert "tokens omitted; in short: " in text and ANSWER in text and CODE in text
        assert text.endswith("\n\n" + QUESTION)
