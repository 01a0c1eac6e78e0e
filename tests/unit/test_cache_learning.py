"""The cache learns from outcomes: feedback (tenant-scoped), misses near a candidate, explored hits.

Real embedding model and real hnswlib; the answers are played through `recording` like an engine's."""

from __future__ import annotations

import pytest

from router.cache import ResponseCache
from router.config import CacheSettings
from router.errors import NotFound
from tests.support.cache import chat, decide, embeddings, serve  # noqa: F401  (fixture)

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

BASE, PARA = "What is the capital of France?", "Which city is the capital of France?"


async def make(embeddings, **settings) -> ResponseCache:  # noqa: F811
    cache = ResponseCache(CacheSettings(**settings), embeddings)
    await cache.start()
    return cache


async def test_the_issue_paraphrase_hits(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.9)
    await serve(cache, chat(BASE), "Paris.")
    hit = await serve(cache, chat(PARA), "")
    assert hit.status == "hit-semantic" and hit.completion().text == "Paris."
    assert hit.headers()["x-router-cache-entry"] == hit.entry.id
    await cache.aclose()


async def test_feedback_is_tenant_scoped(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.9)
    await serve(cache, chat(BASE, tenant="acme"), "Paris.")
    hit = await serve(cache, chat(PARA, tenant="acme", request_id="req-1"), "")
    assert hit.status == "hit-semantic"
    with pytest.raises(NotFound):  # another tenant cannot see, or spoil, acme's hit or entry
        cache.feedback("globex", request_id="req-1", entry_id=None, correct=False)
    with pytest.raises(NotFound):
        cache.feedback("globex", request_id=None, entry_id=hit.entry.id, correct=False)
    with pytest.raises(NotFound):
        cache.feedback("acme", request_id="req-unknown", entry_id=None, correct=True)
    assert cache.learned is not None and len(cache.learned.pool("globex")) == 0
    # Clients choose request ids: globex reusing "req-1" for its own hit does not shadow acme's.
    await serve(cache, chat(BASE, tenant="globex"), "Paris, France.")
    theirs = await serve(cache, chat(PARA, tenant="globex", request_id="req-1"), "")
    assert theirs.status == "hit-semantic" and theirs.entry is not hit.entry
    assert cache.feedback("globex", request_id="req-1", entry_id=None, correct=True)["entry_id"] == theirs.entry.id
    got = cache.feedback("acme", request_id="req-1", entry_id=None, correct=False)
    assert got["entry_id"] == hit.entry.id and not got["dropped"] and got["similarity"] == round(hit.similarity, 4)
    assert len(cache.learned.pool("acme")) == 1 and len(cache.learned.pool("globex")) == 1
    # A wrong outcome at that similarity is the entry's floor: the same rewording no longer hits it...
    again = await cache.lookup(chat(PARA, tenant="acme"), decide(chat(PARA, tenant="acme")))
    assert not again.hit and again.probe is not None and again.probe[0] is hit.entry
    # ...while the entry itself still serves its exact repeat.
    assert (await cache.lookup(chat(BASE, tenant="acme"), decide(chat(BASE, tenant="acme")))).status == "hit-exact"
    await cache.aclose()


async def test_entry_feedback_drops_a_wrong_answer(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    await serve(cache, chat(BASE, tenant="acme"), "Lyon.")
    exact = await cache.lookup(chat(BASE, tenant="acme"), decide(chat(BASE, tenant="acme")))
    assert exact.status == "hit-exact"
    assert cache.feedback("acme", request_id=None, entry_id=exact.entry.id, correct=False)["dropped"]
    assert not (await cache.lookup(chat(BASE, tenant="acme"), decide(chat(BASE, tenant="acme")))).hit
    await cache.aclose()


async def test_a_miss_near_a_candidate_is_checked_against_it(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.999)  # nothing hits: every near miss is an observation
    await serve(cache, chat(BASE), "Paris.")
    same = await serve(cache, chat(PARA), "paris")  # the fresh answer repeats the cached one: right
    assert same.status == "miss" and same.probe is not None
    other = await serve(cache, chat("Tell me the capital city of France."), "It is Paris, of course.")
    assert other.status == "miss" and other.probe is not None
    assert (cache.stats.verifications, cache.stats.verified_wrong) == (2, 1)  # a reworded answer counts as wrong
    pool = cache.learned.pool("default")
    assert len(pool) == 2
    await cache.aclose()


async def test_every_nth_would_be_hit_is_explored(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.9, explore_rate=0.5)
    await serve(cache, chat(BASE), "Paris.")
    first = await serve(cache, chat(PARA), "")
    second = await serve(cache, chat(PARA + " "), "Paris.")  # the 2nd would-be hit: answered fresh, compared
    assert first.status == "hit-semantic" and second.status == "miss" and second.probe is not None
    assert cache.stats.explorations == 1 and cache.stats.verifications == 1 and cache.stats.verified_wrong == 0
    await cache.aclose()


async def test_learning_off_keeps_the_static_threshold(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.999, learn=False)
    await serve(cache, chat(BASE), "Paris.")
    miss = await serve(cache, chat(PARA), "Paris.")
    assert miss.status == "miss" and miss.probe is None and cache.learned is None
    with pytest.raises(NotFound):
        cache.feedback("default", request_id="nope", entry_id=None, correct=True)
    await cache.aclose()


@pytest.mark.parametrize(("judge", "wrong"), [(0.9, 0), (1.0, 1)])
async def test_a_reworded_answer_agrees_only_under_the_embedding_judge(embeddings, judge, wrong) -> None:  # noqa: F811
    cache = await make(embeddings, similarity_threshold=0.999, verify_similarity=judge)
    await serve(cache, chat(BASE), "The capital of France is Paris.")
    await serve(cache, chat(PARA), "Paris is the capital of France.")
    assert (cache.stats.verifications, cache.stats.verified_wrong) == (1, wrong)
    await cache.aclose()
