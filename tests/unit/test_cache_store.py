"""The two-level cache with the real embedding model and real hnswlib (fake answers, a fake clock)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from router.cache import ResponseCache
from router.cache import snapshot as snap
from router.cache.semantic import INITIAL_CAPACITY
from router.config import CacheSettings
from router.types import Chunk
from tests.support.cache import answer, chat, decide, embeddings, serve  # noqa: F401  (fixture)

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def make(embeddings, **settings) -> ResponseCache:  # noqa: F811
    cache = ResponseCache(CacheSettings(**settings), embeddings, clock=settings.pop("clock", None) or Clock())
    await cache.start()
    return cache


async def test_exact_then_paraphrase_then_near_misses(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    assert (await serve(cache, chat("What is the capital of France?"), "Paris.")).status == "miss"
    exact = await serve(cache, chat("What is the capital of France?"), "")
    assert (exact.status, exact.similarity, exact.completion().text) == ("hit-exact", 1.0, "Paris.")
    para = await serve(cache, chat("what's the capital of france"), "")
    assert para.status == "hit-semantic" and para.similarity >= 0.95 and para.completion().text == "Paris."
    for near in [
        "What is the capital of Germany?",
        "What is not the capital of France?",
        "What was the capital of France?",
    ]:
        assert not (await cache.lookup(chat(near), decide(chat(near)))).hit, near
    assert cache.stats.hits_exact == 1 and cache.stats.hits_semantic == 1 and cache.stats.stores == 1
    await cache.aclose()


async def test_hard_key_isolation(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    await serve(cache, chat("Summarise our refund policy.", tenant="acme"), "Acme's secret policy.")
    for other in [
        chat("Summarise our refund policy.", tenant="globex"),  # another tenant, same words
        chat("Summarise our refund policy.", tenant="acme", system="Answer in French."),
        chat("Summarise our refund policy.", tenant="acme", temperature=0.2),
        chat("Summarise our refund policy.", tenant="acme", max_tokens=99),
    ]:
        found = await cache.lookup(other, decide(other))
        assert not found.hit and found.similarity is None  # another namespace: nothing to compare with
    assert (await cache.lookup(*_both(chat("Summarise our refund policy!", tenant="acme")))).hit
    await cache.aclose()


def _both(request):
    return request, decide(request)


async def test_only_complete_answers_are_stored(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    # the consumer stops early (client gone)
    request = chat("Tell me about owls.")
    lookup = await cache.lookup(request, decide(request))
    stream = cache.recording(Chunk(text="Owls"), answer("Owls are birds."), lookup, "m")
    await anext(stream)
    await stream.aclose()
    # the engine fails mid-answer
    with pytest.raises(Exception, match="broke"):
        await serve(cache, chat("Tell me about cats."), "Cats purr.", fail=True)
    # the stream ended, but cancelled
    await serve(cache, chat("Tell me about dogs."), "Dogs bark.", finish="cancelled")
    # the handler was cancelled while the answer streamed
    request = chat("Tell me about bats.")
    lookup = await cache.lookup(request, decide(request))

    async def consume():
        async for _ in cache.recording(Chunk(text="Bats"), _slow(), lookup, "m"):
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await cache.flush()
    assert len(cache) == 0 and cache.stats.stores == 0 and cache.stats.not_stored == 1
    for prompt in ["Tell me about owls.", "Tell me about cats.", "Tell me about dogs.", "Tell me about bats."]:
        assert not (await cache.lookup(*_both(chat(prompt)))).hit
    await cache.aclose()


async def _slow():
    await asyncio.sleep(10)
    yield Chunk(finish_reason="stop")


async def test_request_controls(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    assert (await serve(cache, chat("Hi!", cache_store=False), "Hello.")).status == "miss"
    assert len(cache) == 0
    assert (await serve(cache, chat("Hi!"), "Hello.")).status == "miss"
    no_cache = await serve(cache, chat("Hi!", cache_lookup=False), "Hey.")
    assert no_cache.status == "bypass" and not no_cache.hit
    off = await cache.lookup(*_both(chat("Hi!", cache_lookup=False, cache_store=False)))
    assert (off.status, off.store) == ("bypass", False)
    assert (await cache.lookup(*_both(chat("Hi!")))).completion().text == "Hello."
    await cache.aclose()


async def test_ttl_expiry(embeddings) -> None:  # noqa: F811
    clock = Clock()
    cache = ResponseCache(CacheSettings(ttl_s=60), embeddings, clock=clock)
    await cache.start()
    await serve(cache, chat("What is 2 + 2?"), "4")
    clock.now += 59
    assert (await cache.lookup(*_both(chat("What is 2 + 2?")))).hit
    assert (await cache.lookup(*_both(chat("what is 2 + 2")))).hit
    clock.now += 2
    assert not (await cache.lookup(*_both(chat("what is 2 + 2")))).hit  # semantic candidate expired
    assert not (await cache.lookup(*_both(chat("What is 2 + 2?")))).hit
    assert len(cache) == 0 and cache.stats.expirations == 1
    await cache.aclose()


async def test_sweep_drops_expired_entries_oldest_first(embeddings) -> None:  # noqa: F811
    clock = Clock()
    cache = ResponseCache(CacheSettings(ttl_s=60, semantic=False), embeddings, clock=clock)
    await cache.start()
    for i in range(3):
        await serve(cache, chat(f"question {i}"), "a")
        clock.now += 30
    assert cache.sweep() == 2 and len(cache) == 1
    await cache.aclose()


async def test_eviction_at_capacity_reuses_index_slots(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, max_entries=3)
    prompts = [f"Describe animal number {i} in one word." for i in range(INITIAL_CAPACITY * 2)]
    for i, prompt in enumerate(prompts):
        await serve(cache, chat(prompt), f"answer {i}")
    assert len(cache) == 3 and cache.stats.evictions == len(prompts) - 3
    ns = next(iter(cache._namespaces.values()))
    assert len(ns.labels) == 3
    assert ns._index.get_max_elements() == INITIAL_CAPACITY  # deleted slots were reused, no growth
    assert not (await cache.lookup(*_both(chat(prompts[0])))).hit
    last = await cache.lookup(*_both(chat(prompts[-1].lower())))
    assert last.hit and last.completion().text == f"answer {len(prompts) - 1}"
    await cache.aclose()


async def test_index_grows_by_resize(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    prompts = [f"Name a colour with the code {i}." for i in range(INITIAL_CAPACITY * 2 + 1)]
    for i, prompt in enumerate(prompts):
        await serve(cache, chat(prompt), f"colour {i}")
    ns = next(iter(cache._namespaces.values()))
    assert ns._index.get_max_elements() >= len(prompts) and len(ns.labels) == len(prompts)
    for i in (0, len(prompts) - 1):
        found = await cache.lookup(*_both(chat(prompts[i].rstrip("."))))
        assert found.status == "hit-semantic" and found.completion().text == f"colour {i}"
    await cache.aclose()


async def test_snapshot_round_trip(embeddings, tmp_path: Path) -> None:  # noqa: F811
    clock = Clock()
    cache = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings, clock=clock)
    await cache.start()
    await serve(cache, chat("What is the boiling point of water?"), "100 °C.")
    await serve(cache, chat("Tell me a story.", temperature=1.0), "Once upon a time.")  # exact tier only
    await cache.aclose()  # writes the final snapshot
    assert os.listdir(tmp_path) == [snap.FILE_NAME]  # no temporary file left behind

    again = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings, clock=clock)
    await again.start()
    assert len(again) == 2
    assert (await again.lookup(*_both(chat("Tell me a story.", temperature=1.0)))).status == "hit-exact"
    para = await again.lookup(*_both(chat("what is the boiling point of water")))
    assert para.status == "hit-semantic" and para.completion().text == "100 °C."
    await again.aclose()

    clock.now += 7200  # past the TTL: nothing comes back
    late = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings, clock=clock)
    await late.start()
    assert len(late) == 0
    await late.aclose()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"not a snapshot at all",
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:40] + bytes([data[40] ^ 0xFF]) + data[41:],  # a flipped byte
        lambda data: data.replace(b"HRCACHE\n\x01", b"HRCACHE\n\x09", 1),  # a future format
        lambda data: b"",
    ],
)
async def test_corrupt_snapshot_is_reported_and_ignored(embeddings, tmp_path: Path, damage, caplog) -> None:  # noqa: F811
    cache = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings)
    await cache.start()
    await serve(cache, chat("What is the speed of light?"), "Fast.")
    await cache.aclose()
    path = tmp_path / snap.FILE_NAME
    path.write_bytes(damage(path.read_bytes()))
    fresh = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings)
    await fresh.start()  # never raises
    assert fresh.ready and len(fresh) == 0 and fresh.stats.snapshot_errors == 1
    assert "snapshot" in caplog.text and "ignored" in caplog.text
    assert (await serve(fresh, chat("What is the speed of light?"), "Fast.")).status == "miss"
    await fresh.aclose()


async def test_snapshot_from_another_embedding_model_keeps_exact_entries(embeddings, tmp_path: Path) -> None:  # noqa: F811
    cache = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings)
    await cache.start()
    await serve(cache, chat("What is the speed of sound?"), "343 m/s.")
    await cache.aclose()
    path = tmp_path / snap.FILE_NAME
    meta, vectors = snap.read(path)
    meta["probe"] = [-x for x in meta["probe"]]  # as if another model had written it
    snap.write(path, meta, vectors)
    again = ResponseCache(CacheSettings(persist_dir=str(tmp_path)), embeddings)
    await again.start()
    assert (await again.lookup(*_both(chat("What is the speed of sound?")))).status == "hit-exact"
    assert not (await again.lookup(*_both(chat("what is the speed of sound")))).hit
    await again.aclose()


async def test_hash_collision_never_serves_another_answer(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, semantic=False)
    await serve(cache, chat("first question"), "first answer")
    entry = next(iter(cache._entries.values()))
    other = chat("second question")
    lookup = await cache.lookup(other, decide(other))
    # force the second request's hash onto the first entry's slot: the bytes differ, so it is a miss
    entry.key, entry.hash = b"something else", lookup.keys.exact_hash
    cache._entries = type(cache._entries)({entry.hash: entry})
    assert not (await cache.lookup(other, decide(other))).hit
    await cache.aclose()
