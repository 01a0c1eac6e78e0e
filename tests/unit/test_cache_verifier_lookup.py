"""The semantic cache with the pair verifier on (the default): real embedding model, real hnswlib, shipped weights.

Rewordings hit; a changed number, negation, name or output constraint misses (the guard's hard checks veto before
the verifier runs); the verifier's threshold is the one its calibration certifies for the configured bound;
tenants never see each other's entries. The shipped calibration certifies bounds from about 20 % (Quora's label
noise, benchmarks/RESULTS.md), so these run at error_bound 0.2; at the default 1 % the cache falls back to cosine
thresholds, which the other cache tests cover."""

from __future__ import annotations

import pytest

from router.cache import ResponseCache
from router.cache.verifier import Verifier
from router.config import CacheSettings
from tests.support.cache import chat, decide, embeddings, serve  # noqa: F401  (fixture)

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

PARAPHRASES = [
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
    ("What are the health benefits of green tea?", "What health benefits does green tea have?"),
    ("How can I improve my English speaking skills?", "How do I improve my spoken English?"),
    ("What is the best way to learn to play the guitar?", "What's the best way to learn guitar?"),
]
DIFFERENT = [  # (cached, query, the hard check that must refuse it)
    ("What is 17 times 23?", "What is 17 times 24?", "number"),
    ("Is it safe to swim after eating?", "Is it not safe to swim after eating?", "negation"),
    ("What is the capital of France?", "What is the capital of Spain?", "entity"),
    ("Summarise the French Revolution in 3 bullet points.", "Summarise the French Revolution in 5 bullet points.",
     "output constraint"),
    ("Summarise the French Revolution as a table.", "Summarise the French Revolution as a paragraph.",
     "output format"),
]  # fmt: skip


async def make(embeddings, **settings) -> ResponseCache:  # noqa: F811
    settings.setdefault("error_bound", 0.2)
    cache = ResponseCache(CacheSettings(**settings), embeddings)
    await cache.start()
    return cache


async def test_the_verifier_runs_at_the_score_certified_for_the_bound(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    assert cache.verifier is not None
    expected = Verifier.load().threshold(cache.settings.error_bound, cache.settings.confidence)
    assert expected is not None
    assert cache.learned_threshold("default", decide(chat("x"))) == pytest.approx(expected)
    looser = await make(embeddings, error_bound=0.3)
    assert looser.learned_threshold("default", decide(chat("x"))) <= expected
    # A bound the calibration cannot certify: cosine thresholds, as with verifier off.
    strict = await make(embeddings, error_bound=0.01)
    assert strict.verifier is None
    assert strict.learned_threshold("default", decide(chat("x"))) == strict.settings.similarity_threshold
    for c in (cache, looser, strict):
        await c.aclose()


async def test_real_rewordings_hit(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    for cached, query in PARAPHRASES:
        await serve(cache, chat(cached), f"The answer to {cached}")
        hit = await serve(cache, chat(query), "")
        assert hit.status == "hit-semantic", (cached, query, hit.similarity)
        assert hit.completion().text == f"The answer to {cached}"
        assert float(hit.headers()["x-router-cache-score"]) >= cache.learned_threshold("default", decide(chat(query)))
    await cache.aclose()


async def test_changed_details_miss(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    for cached, query, why in DIFFERENT:
        await serve(cache, chat(cached), "cached answer")
        got = await serve(cache, chat(query), "fresh answer")
        assert got.status == "miss", (why, cached, query)
    assert cache.stats.guard_rejections >= len(DIFFERENT)
    await cache.aclose()


async def test_tenants_stay_isolated_with_the_verifier(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings)
    cached, query = PARAPHRASES[0]
    await serve(cache, chat(cached, tenant="acme"), "Paris.")
    theirs = await serve(cache, chat(query, tenant="globex"), "something else")
    assert theirs.status == "miss" and theirs.similarity is None  # not even a candidate: another namespace
    mine = await serve(cache, chat(query, tenant="acme"), "")
    assert mine.status == "hit-semantic" and mine.completion().text == "Paris."
    await cache.aclose()


async def test_verifier_off_is_the_cosine_cache(embeddings) -> None:  # noqa: F811
    cache = await make(embeddings, verifier="off", similarity_threshold=0.9)
    assert cache.verifier is None
    await serve(cache, chat(PARAPHRASES[0][0]), "Paris.")
    hit = await serve(cache, chat(PARAPHRASES[0][1]), "")
    assert hit.status == "hit-semantic" and "x-router-cache-score" not in hit.headers()
    await cache.aclose()


async def test_learned_thresholds_work_on_the_verifier_score(embeddings) -> None:  # noqa: F811
    """Feedback on a verifier hit is an observation at its score: a wrong one becomes the entry's floor (in score
    space), so the same rewording stops hitting that entry, while its exact repeat still does."""
    cache = await make(embeddings)
    cached, query = PARAPHRASES[0]
    await serve(cache, chat(cached, tenant="acme"), "Paris.")
    hit = await serve(cache, chat(query, tenant="acme", request_id="r1"), "")
    assert hit.status == "hit-semantic" and hit.score is not None and hit.score < 1.0
    got = cache.feedback("acme", request_id="r1", entry_id=None, correct=False)
    assert not got["dropped"] and got["similarity"] == round(hit.score, 4)
    assert hit.entry.record is not None and hit.entry.record.floor == pytest.approx(hit.score)
    again = await cache.lookup(chat(query, tenant="acme"), decide(chat(query, tenant="acme")))
    assert not again.hit and again.probe is not None and again.probe[0] is hit.entry
    assert (await cache.lookup(chat(cached, tenant="acme"), decide(chat(cached, tenant="acme")))).status == "hit-exact"
    await cache.aclose()
