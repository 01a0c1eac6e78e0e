"""The response cache through the real server: real SmolLM2, real embedding model, real hnswlib, openai SDK."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from router.app import CACHE, PIPELINE, POLICY
from router.cache import snapshot
from router.config import CacheSettings, Settings
from router.http.openai import parse_chat_request
from router.types import ChatRequest, Completion, Message, SamplingParams
from tests.conftest import MODEL
from tests.support.cache import wait_ready
from tests.support.server import ServerThread, running

pytestmark = pytest.mark.model


def start(**cache: object):
    server = running(Settings(cache=CacheSettings(**cache)))
    return server


@pytest.fixture(scope="module")
def server():
    with start() as srv:
        wait_ready(srv.base_url)
        yield srv


def ask(srv: ServerThread, prompt: str, *, system: str | None = None, flush: bool = True, **kw: object):
    """One chat request; returns (x-router-cache, similarity, answer text). Waits for the store to finish."""
    client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 4)
    kw.setdefault("model", MODEL)
    raw = client.chat.completions.with_raw_response.create(messages=messages, **kw)
    if flush:
        srv.call(srv.app[CACHE].flush())
    h = raw.headers
    return h["x-router-cache"], h.get("x-router-cache-similarity"), raw.parse().choices[0].message.content


def test_exact_hit_in_both_formats(server) -> None:
    status, _, text = ask(server, "Name a primary colour.")
    assert status == "miss"
    assert ask(server, "Name a primary colour.") == ("hit-exact", "1.0000", text)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name a primary colour."}],
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        assert resp.headers["x-router-cache"] == "hit-exact"
        assert resp.headers["content-type"].startswith("text/event-stream")
        chunks = list(resp.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_paraphrase_hit(server) -> None:
    status, _, text = ask(server, "What is the capital of Italy?")
    assert status == "miss"
    status, similarity, cached = ask(server, "what's the capital of italy")
    assert status == "hit-semantic" and float(similarity) >= 0.95 and cached == text


def test_near_misses_all_miss(server) -> None:
    base = "Is the Paris office open on Sundays at 9am?"
    ask(server, base)
    assert ask(server, base)[0] == "hit-exact"
    near = [
        ("Is the Paris office not open on Sundays at 9am?", {}),  # negation
        ("Is the Paris office open on Sundays at 10am?", {}),  # number
        ("Is the Berlin office open on Sundays at 9am?", {}),  # name
        (base, {"system": "Answer in French."}),  # another system prompt
        (base, {"temperature": 0.2}),  # other sampling
        (base, {"max_tokens": 5}),
    ]
    for prompt, kw in near:
        assert ask(server, prompt, **kw)[0] == "miss", (prompt, kw)


def test_two_tenants_never_share_an_entry(server) -> None:
    async def as_tenant(tenant: str, prompt: str) -> tuple[str, str]:
        request = ChatRequest(
            model=MODEL,
            messages=[Message("user", prompt)],
            sampling=SamplingParams(temperature=0.0, max_tokens=4),
            tenant=tenant,
        )
        outcome = await server.app[PIPELINE].chat(request)
        answer = await Completion.gather(outcome.chunks())
        await server.app[CACHE].flush()
        return outcome.headers["x-router-cache"], answer.text

    prompt = "Summarise the confidential board memo."
    assert server.call(as_tenant("acme", prompt))[0] == "miss"
    assert server.call(as_tenant("acme", prompt))[0] == "hit-exact"
    assert server.call(as_tenant("globex", prompt))[0] == "miss"  # same words, another tenant
    assert server.call(as_tenant("globex", prompt + "!"))[0] == "hit-semantic"  # its own entry, not acme's
    assert server.call(as_tenant("initech", prompt + "!"))[0] == "miss"


def test_interrupted_stream_is_not_stored(server) -> None:
    prompt = "Count from 1 to 200, separated by commas."
    before = len(server.app[CACHE])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=200, temperature=0, stream=True
    ) as resp:
        assert resp.headers["x-router-cache"] == "miss"
        next(resp.iter_lines())  # the first event, then hang up
    time.sleep(0.3)
    server.call(server.app[CACHE].flush())
    # the same request again, looked up without running the model
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 200, "temperature": 0}
    request = parse_chat_request(body)
    lookup = server.call(server.app[CACHE].lookup(request, server.app[POLICY].decide(request)))
    assert lookup.status == "miss" and len(server.app[CACHE]) == before


def test_request_controls(server) -> None:
    prompt = "Name a planet."
    assert ask(server, prompt, extra_headers={"Cache-Control": "no-store"})[0] == "miss"
    assert ask(server, prompt)[0] == "miss"  # the first answer was not stored
    assert ask(server, prompt, extra_headers={"Cache-Control": "no-cache"})[0] == "bypass"
    assert ask(server, prompt, extra_body={"cache": False})[0] == "bypass"
    assert ask(server, prompt, extra_body={"cache": {"no-cache": True}})[0] == "bypass"
    assert ask(server, prompt)[0] == "hit-exact"
    assert ask(server, prompt, temperature=1.0)[0] == "miss"  # exact tier at any temperature, another key


def test_eviction_and_persistence_across_restart(tmp_path: Path) -> None:
    with start(persist_dir=str(tmp_path), max_entries=2) as srv:
        wait_ready(srv.base_url)
        for prompt in ("Name a fruit.", "Name a tree.", "Name a bird."):
            assert ask(srv, prompt)[0] == "miss"
        assert ask(srv, "Name a bird.")[0] == "hit-exact"
        assert ask(srv, "Name a fruit.")[0] == "miss"  # evicted: capacity 2, least recently used first
        stored = {p: ask(srv, p)[2] for p in ("Name a fruit.", "Name a bird.")}
        assert srv.app[CACHE].metrics()["evictions"] == 2
    assert (tmp_path / snapshot.FILE_NAME).exists()
    with start(persist_dir=str(tmp_path), max_entries=2) as srv:
        wait_ready(srv.base_url)
        assert ask(srv, "Name a fruit.") == ("hit-exact", "1.0000", stored["Name a fruit."])
        assert ask(srv, "name a bird")[0::2] == ("hit-semantic", stored["Name a bird."])
        assert ask(srv, "Name a tree.")[0] == "miss"


def test_corrupt_snapshot_is_ignored_and_ttl_expires(tmp_path: Path) -> None:
    (tmp_path / snapshot.FILE_NAME).write_bytes(b"HRCACHE\n" + b"\x00" * 64)
    with start(persist_dir=str(tmp_path), ttl_s=1.0) as srv:
        wait_ready(srv.base_url)  # started, reported, carried on
        assert srv.app[CACHE].metrics()["snapshot_errors"] == 1
        assert ask(srv, "Name a river.")[0] == "miss"
        assert ask(srv, "Name a river.")[0] == "hit-exact"
        time.sleep(1.1)
        assert ask(srv, "Name a river.")[0] == "miss"


def test_frontier_answers_are_cached_but_fallbacks_are_not(tmp_path: Path) -> None:
    from router.config import load_settings
    from tests.fakes.frontier import FakeFrontier

    fake = FakeFrontier().start()
    try:
        key = tmp_path / "key"
        key.write_text("sk-test\n")
        common = f'provider: anthropic, base_url: "{fake.url}", api_key_file: "{key}"'
        cfg = tmp_path / "router.yaml"
        cfg.write_text(
            "frontier:\n"
            "  resilience: {max_retries: 0}\n"
            "  models:\n"
            f"    - {{name: claude, model_id: ok, {common}}}\n"
            f"    - {{name: claude-down, model_id: error_529, {common}}}\n"
        )
        with running(load_settings(cfg, environ={})) as srv:
            wait_ready(srv.base_url)
            prompt = "Plan the migration of our billing system."
            assert ask(srv, prompt, model="claude")[0] == "miss"
            status, _, text = ask(srv, prompt, model="claude")
            assert status == "hit-exact" and text.startswith("Frontier answer")
            assert ask(srv, prompt, model="claude-down")[0] == "miss"  # served by the local fallback...
            assert ask(srv, prompt, model="claude-down")[0] == "miss"  # ...and never stored
    finally:
        fake.stop()


def test_anthropic_messages_are_cached_apart_from_openai_chat(server) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    prompt = "Name a mountain."
    kw = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": prompt}]}
    first = client.messages.with_raw_response.create(**kw)
    server.call(server.app[CACHE].flush())
    second = client.messages.with_raw_response.create(**kw)
    assert (first.headers["x-router-cache"], second.headers["x-router-cache"]) == ("miss", "hit-exact")
    text = "".join(b.text for b in first.parse().content if b.type == "text")
    with client.messages.stream(**kw) as stream:
        assert "".join(stream.text_stream) == text  # a hit replayed as Anthropic SSE events
    assert ask(server, prompt, temperature=1.0)[0] == "miss"  # same sampling; the OpenAI API is another hard key
