"""The two-level response cache: `lookup` before a model runs, `recording` to store what it answered.

    lookup   exact tier: fnv1a_64(canonical request) → entry, verified against the stored canonical bytes;
             semantic tier (safe requests only, see keys.py): embed the prompt, search the request's namespace
             index, accept the best candidate at or above the threshold that passes the lexical guard (guard.py);
             with the pair verifier (verifier.py) the guard's hard checks veto and the verifier's score, at the
             threshold certified for error_bound, decides
    store    only an answer that streamed to its end (finish stop, length or tool_calls) and was fully consumed:
             never an error, never an interrupted or cancelled stream. The store runs in a task after the last
             chunk went out, so it never delays the answer.

Bounded: a TTL (wall clock, so it survives restarts) and `max_entries` with least-recently-used eviction; an
evicted entry's vector is marked deleted in its index and its slot reused. Persisted, when `persist_dir` is set,
by periodic atomic snapshots (snapshot.py), loaded at start-up; a bad snapshot is reported and ignored.

Everything here runs on the event loop except inference (embed.py's thread) and index work (semantic.py's thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np

from router.cache import persist, snapshot
from router.cache.embed import EmbeddingService
from router.cache.entry import (
    BYPASS,
    PROBE,
    STORABLE,
    CacheStats,
    Entry,
    Lookup,
    entry_from_record,
    entry_tenant,
    same_answer,
)
from router.cache.guard import Anchors, agree, anchors, hard_agree
from router.cache.keys import Keys, cache_keys, embedding_text
from router.cache.semantic import Namespace, SemanticIndex
from router.cache.thresholds import Thresholds
from router.cache.verifier import Verifier, load_verifier
from router.config import CacheSettings
from router.errors import NotFound, RouterError
from router.routing.policy import Decision
from router.types import ChatRequest, Chunk, Completion

__all__ = ["BYPASS", "CacheStats", "Entry", "Lookup", "ResponseCache"]
__all__ += ["entry_from_record", "entry_tenant", "same_answer"]  # moved to entry.py, still importable from here

log = logging.getLogger(__name__)

NO_HITS = 1.0 + 1e-9  # a threshold no score reaches


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        embeddings: EmbeddingService | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._embeddings = embeddings if settings.semantic else None
        self._index: SemanticIndex | None = None
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # exact hash → entry, least recently used first
        self._by_age: dict[int, Entry] = {}  # the same entries, oldest first (= soonest to expire)
        self._namespaces: dict[int, Namespace] = {}
        self._next_label = 0
        self._probe: np.ndarray | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self.ready = not settings.enabled  # a disabled cache has nothing to load
        self.stats = CacheStats()
        self.learned = (
            Thresholds(settings.error_bound, settings.confidence, settings.calibration_window, settings.entry_window)
            if settings.learn
            else None
        )
        # Served hits by (tenant, request id), for feedback: (entry, similarity), oldest first. The tenant is part
        # of the key because clients choose request ids (x-request-id): one tenant's id never shadows another's.
        self._served: OrderedDict[tuple[str, str], tuple[Entry, float]] = OrderedDict()
        self._would_hit = 0  # would-be semantic hits so far: every (1/explore_rate)-th one is explored
        self.path = Path(settings.persist_dir) / snapshot.FILE_NAME if settings.persist_dir else None
        self.verifier: Verifier | None = None  # the pair verifier (verifier.py), once start() loaded it
        self._verifier_threshold = NO_HITS  # the verifier score certified for error_bound (NO_HITS: none)
        self.replicator: Any = None  # router.state.cache.CacheReplicator when replicas share a Redis

    @property
    def semantic(self) -> bool:
        return self._index is not None

    def __len__(self) -> int:
        return len(self._entries)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait for the embedding model, load the snapshot, start maintenance. Never raises for a bad snapshot."""
        if not self.settings.enabled:
            return
        if self._embeddings is not None:
            await self._embeddings.started.wait()
            if self._embeddings.ready:
                s = self.settings
                try:
                    self._index = SemanticIndex(
                        self._embeddings.dim,
                        m=s.hnsw_m,
                        ef_construction=s.hnsw_ef_construction,
                        ef_search=s.hnsw_ef_search,
                    )
                except ImportError:
                    log.warning("response cache: hnswlib is not installed, so exact matches only")
                else:
                    self._probe = (await self._embeddings.embed([PROBE])).vectors[0]
                    self._start_verifier(self._embeddings.dim)
            else:
                log.warning("response cache: no embedding model, so exact matches only")
        if self.path is not None:
            await self.load()
        self._maintainer = asyncio.get_running_loop().create_task(self._maintain(), name="cache-maintenance")
        self.ready = True

    def _start_verifier(self, dim: int) -> None:
        s = self.settings
        self.verifier = load_verifier(s.verifier, s.verifier_model, dim)
        if self.verifier is None:
            return
        certified = self.verifier.threshold(s.error_bound, s.confidence)
        if certified is None:
            # Its calibration split cannot certify this bound (the shipped one: bounds under about 20 %, because of
            # the label noise of Quora pairs, benchmarks/RESULTS.md): cosine thresholds, as with verifier off.
            log.warning(
                "response cache: the pair verifier certifies no score for %.1f %% wrong hits at %.0f %%; "
                "cosine thresholds only",
                100 * s.error_bound,
                100 * s.confidence,
            )
            self.verifier = None
            return
        self._verifier_threshold = certified
        log.info(
            "response cache: pair verifier %s, score threshold %.4f certified for %.1f %% wrong hits at %.0f %%",
            self.verifier.digest[:12],
            certified,
            100 * s.error_bound,
            100 * s.confidence,
        )

    async def aclose(self) -> None:
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
        await self.flush()
        if self.path is not None and self.ready:
            try:
                await self.save()
            except OSError as exc:
                log.error("response cache: final snapshot to %s failed: %s", self.path, exc)
        if self._index is not None:
            self._index.close()

    async def flush(self) -> None:
        """Wait for the stores in progress and the index work they queued (tests, shutdown, snapshots)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._index is not None:
            await self._index.drain()

    async def _maintain(self) -> None:
        sweep_every = min(60.0, self.settings.ttl_s)
        snapshot_every = self.settings.snapshot_interval_s if self.path is not None else 0.0
        last_snapshot = time.monotonic()
        while True:
            await asyncio.sleep(sweep_every if not snapshot_every else min(sweep_every, snapshot_every))
            self.sweep()
            if snapshot_every and time.monotonic() - last_snapshot >= snapshot_every:
                last_snapshot = time.monotonic()
                try:
                    await self.save()
                except OSError as exc:
                    self.stats.snapshot_errors += 1
                    log.error("response cache: snapshot to %s failed: %s", self.path, exc)

    # -- lookup --------------------------------------------------------------------------------------------------

    async def lookup(self, request: ChatRequest, decision: Decision) -> Lookup:
        s = self.settings
        if not self.ready or not s.enabled or request.sampling.temperature > s.exact_max_temperature:
            self.stats.bypasses += 1
            return BYPASS
        if not request.cache_lookup:
            self.stats.bypasses += 1
            if not request.cache_store:
                return BYPASS
            return Lookup("bypass", cache_keys(request, decision, s, self.semantic), store=True)
        keys = cache_keys(request, decision, s, self.semantic)
        result = Lookup("miss", keys, store=request.cache_store, tenant=request.tenant)
        now = self.clock()
        entry = self._entries.get(keys.exact_hash)
        if entry is not None and entry.key == keys.exact:  # the bytes, not just the hash: no collision serves
            if entry.expires > now:
                self._entries.move_to_end(entry.hash)
                self.stats.hits_exact += 1
                result.status, result.entry, result.similarity, result.store = "hit-exact", entry, 1.0, False
                self._served_hit(request, entry, 1.0)
                return result
            self._remove(entry, expired=True)
        if keys.namespace is not None:
            await self._semantic(request, decision, keys, result, now)
        if result.entry is None:
            self.stats.misses += 1
        return result

    async def _semantic(self, request: ChatRequest, decision: Decision, keys: Keys, result: Lookup, now: float) -> None:
        ns = self._namespaces.get(keys.namespace_hash)
        if ns is None or ns.key != keys.namespace or not ns.labels:
            return  # nothing to match against: the embedding is left to the store, off the hot path
        assert self._embeddings is not None and self._index is not None
        try:
            embedded = await self._embeddings.embed([embedding_text(keys.prompt)])
        except RouterError:  # saturated or failing: a miss, not an error
            return
        if embedded.truncated[0]:
            # Beyond the model's window two prompts may differ where the embedding cannot see.
            result.keys = Keys(keys.exact, keys.exact_hash)
            return
        result.vector = embedded.vectors[0]
        candidates = await self._index.search(ns, result.vector, self.settings.candidates)
        if not candidates:
            return
        result.similarity = candidates[0][1]
        threshold, floor = self._band(request.tenant, decision)
        # Candidates below the threshold but above the probe floor are still checked: on a miss, the fresh answer
        # is compared with the nearest one's, which is how the thresholds learn to come down.
        probe_floor = min(threshold, self.settings.observe_floor) if self.learned is not None else NO_HITS
        mine: Anchors | None = None
        for label, similarity in candidates:
            if similarity < floor:
                break
            entry = self._live(ns, label, now)
            if entry is None:
                continue
            if self.settings.guard or self.verifier is not None:
                mine = mine or anchors(keys.prompt)
            score = self._score(result.vector, similarity, mine, entry, threshold)
            if score is None:
                continue
            if score < threshold or (
                self.learned is not None and not self.learned.allows(score, threshold, entry.record)
            ):
                if score >= threshold:
                    self.stats.threshold_rejections += 1  # above the tenant's threshold, refused by the entry's
                elif self.verifier is not None:
                    self.stats.verifier_rejections += 1
                if score >= probe_floor:
                    result.probe = result.probe or (entry, score)
                continue
            if self.learned is not None and self._explore():
                self.stats.explorations += 1
                result.probe = (entry, score)
                return  # answered fresh, then compared: an observation above the threshold
            self._entries.move_to_end(entry.hash)
            self.stats.hits_semantic += 1
            result.status, result.entry, result.similarity, result.store = "hit-semantic", entry, similarity, False
            result.score = score if self.verifier is not None else None
            self._served_hit(request, entry, score)
            return

    def _band(self, tenant: str, decision: Decision) -> tuple[float, float]:
        """(the score a hit needs, the least cosine worth scoring). The score is the cosine itself, or with the
        verifier its probability; the learned thresholds (thresholds.py) work on whichever it is."""
        if self.verifier is None:
            threshold = self.threshold(decision)
            if self.learned is not None:
                threshold = self.learned.threshold(tenant, threshold)
            return threshold, min(threshold, self.settings.observe_floor) if self.learned is not None else threshold
        threshold = self._verifier_threshold
        if self.learned is not None:
            threshold = self.learned.threshold(tenant, threshold)
        t = self.settings.thresholds  # a rule's or task's own cosine threshold stays a floor under the verifier
        return threshold, max(self.verifier.min_cosine, t.get(decision.rule) or t.get(decision.task) or 0.0)

    def _live(self, ns: Namespace, label: int, now: float) -> Entry | None:
        entry = ns.labels.get(label)
        if entry is None or not entry.alive:
            return None
        if entry.expires <= now:
            self._remove(entry, expired=True)
            return None
        return entry

    def _score(
        self, vector: np.ndarray, similarity: float, mine: Anchors | None, entry: Entry, threshold: float
    ) -> float | None:
        """The candidate's score, or None when the guard vetoes it. Without the verifier: the cosine, after the
        whole guard. With it: the verifier's probability, after the guard's hard checks (always: the verifier
        was fitted and calibrated only on pairs that pass them)."""
        verifier = self.verifier
        if verifier is None:
            if mine is not None and not agree(mine, entry.anchors):
                self.stats.guard_rejections += similarity >= threshold
                return None
            return similarity
        assert mine is not None
        if entry.vector is None or not hard_agree(mine, entry.anchors):
            self.stats.guard_rejections += 1
            return None
        # Kept below 1: a score of 1 would read as an exact repeat to feedback and the entry floor.
        return min(verifier.score(vector, entry.vector, mine, entry.anchors), 1.0 - 1e-9)

    def _explore(self) -> bool:
        """Every (1/explore_rate)-th would-be semantic hit, counted: deterministic, so tests and replays repeat."""
        rate = self.settings.explore_rate
        if rate <= 0:
            return False
        self._would_hit += 1
        return self._would_hit % max(1, round(1 / rate)) == 0

    def _served_hit(self, request: ChatRequest, entry: Entry, similarity: float) -> None:
        if not request.request_id:
            return
        self._served[request.tenant, request.request_id] = (entry, similarity)
        while len(self._served) > self.settings.feedback_window:
            self._served.popitem(last=False)

    # -- learning from outcomes ----------------------------------------------------------------------------------

    async def _verify(self, tenant: str, entry: Entry, similarity: float, fresh: Completion) -> None:
        """A fresh answer to a query near `entry`: the same answer says the entry was right for it. "The same":
        equal text (case, spacing, punctuation aside), or, when `verify_similarity` < 1, answers whose embeddings
        are at least that close (a reworded answer; an answer the embedder truncates never counts)."""
        assert self.learned is not None
        correct = same_answer(entry.completion, fresh)
        text_only = not (entry.completion.tool_calls or fresh.tool_calls)
        if not correct and text_only and self.settings.verify_similarity < 1.0 and self._embeddings is not None:
            try:
                got = await self._embeddings.embed([entry.completion.text, fresh.text])
            except RouterError:
                return  # no judgement, no observation
            close = float(np.dot(got.vectors[0], got.vectors[1])) >= self.settings.verify_similarity
            correct = close and not any(got.truncated)
        self.stats.verifications += 1
        self.stats.verified_wrong += not correct
        self._observe(tenant, entry, similarity, correct)

    def _observe(self, tenant: str, entry: Entry, similarity: float, correct: bool) -> None:
        assert self.learned is not None
        if entry.record is None and entry.alive:
            entry.record = self.learned.record()
        self.learned.observe(tenant, similarity, correct, entry.record if entry.alive else None)

    def feedback(self, tenant: str, *, request_id: str | None, entry_id: str | None, correct: bool) -> dict[str, Any]:
        """An outcome reported by a client: for a served hit (by request id) or against an entry (by entry id).

        Scoped to the tenant: another tenant's request or entry is not found, exactly like one that never existed.
        A wrong exact hit or a wrong entry means the answer itself is bad: the entry is dropped. A semantic hit's
        outcome becomes an observation at its similarity."""
        if request_id is not None:
            served = self._served.get((tenant, request_id))
            if served is None:
                raise NotFound(f"no cache hit with request id {request_id!r} (recent hits only)", code="not_found")
            entry, similarity = served
        else:
            assert entry_id is not None
            try:
                entry = self._entries.get(int(entry_id, 16))
            except ValueError:
                entry = None
            if entry is None or entry.id != entry_id or entry_tenant(entry) != tenant:
                raise NotFound(f"no cache entry with id {entry_id!r}", code="not_found")
            similarity = 1.0
        self.stats.feedback += 1
        dropped = False
        if similarity >= 1.0 or entry_id is not None:
            if not correct and entry.alive:
                self._remove(entry)
                dropped = True
        elif self.learned is not None:
            self._observe(tenant, entry, similarity, correct)
        return {"entry_id": entry.id, "similarity": round(similarity, 4), "correct": correct, "dropped": dropped}

    def learned_threshold(self, tenant: str, decision: Decision) -> float:
        """The score threshold a lookup of this tenant uses now (static or the verifier's before any observation)."""
        return self._band(tenant, decision)[0]

    def threshold(self, decision: Decision) -> float:
        t = self.settings.thresholds
        return t.get(decision.rule) or t.get(decision.task) or self.settings.similarity_threshold

    # -- store ---------------------------------------------------------------------------------------------------

    async def recording(
        self, first: Chunk, rest: AsyncIterator[Chunk], lookup: Lookup, model: str
    ) -> AsyncIterator[Chunk]:
        """`rest`, passed through; once it has ended normally, the whole answer is stored (in a task)."""
        chunks = [first]
        async with aclosing(rest):  # type: ignore[type-var]
            async for chunk in rest:
                chunks.append(chunk)
                yield chunk
        # Only reached when the consumer read past the last chunk: not on cancel, error or early close.
        task = asyncio.get_running_loop().create_task(self._store(lookup, model, chunks))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, lookup: Lookup, model: str, chunks: list[Chunk]) -> None:
        keys = lookup.keys
        assert keys is not None
        completion = await Completion.gather(_iterate(chunks))
        if lookup.probe is not None and completion.finish_reason in STORABLE:
            await self._verify(lookup.tenant, *lookup.probe, completion)
        if completion.finish_reason not in STORABLE or len(completion.text) > self.settings.max_answer_chars:
            self.stats.not_stored += 1
            return
        completion.logprobs = None
        existing = self._entries.get(keys.exact_hash)
        now = self.clock()
        if existing is not None and existing.key == keys.exact and existing.expires > now:
            return  # a concurrent identical request stored it first
        entry = Entry(
            keys.exact,
            keys.exact_hash,
            model,
            completion,
            now,
            now + self.settings.ttl_s,
            keys.namespace,
            keys.namespace_hash,
            keys.prompt if keys.namespace is not None else "",
        )
        self._insert(entry)
        self.stats.stores += 1
        vector = await self._vector(keys, lookup)
        if vector is not None:
            self._index_entry(entry, vector)
        if self.replicator is not None:  # shared state (router/state/cache.py): the other replicas get it too
            self.replicator.publish(entry, vector)

    async def _vector(self, keys: Keys, lookup: Lookup) -> np.ndarray | None:
        if keys.namespace is None or self._index is None:
            return None
        if lookup.vector is not None:
            return lookup.vector
        assert self._embeddings is not None
        try:
            embedded = await self._embeddings.embed([embedding_text(keys.prompt)])
        except RouterError:
            return None
        return None if embedded.truncated[0] else embedded.vectors[0]

    def absorb(self, entry: Entry, vector: np.ndarray | None) -> bool:
        """An entry another replica stored (router/state/cache.py): kept like a local one. A vector of another
        dimension (another embedding model) is not indexed: the entry then serves exact matches only."""
        if not self.ready or not self.settings.enabled or entry.expires <= self.clock():
            return False
        existing = self._entries.get(entry.hash)
        if existing is not None and existing.key == entry.key and existing.expires > self.clock():
            return False
        self._insert(entry)
        if vector is not None and self._index is not None and vector.shape == (self._index.dim,):
            self._index_entry(entry, vector)
        else:
            entry.namespace_key = None
        return True

    def _insert(self, entry: Entry) -> None:
        old = self._entries.get(entry.hash)
        if old is not None:
            self._remove(old)  # expired, or a hash collision: the newer answer takes the slot
        self._entries[entry.hash] = entry
        self._by_age[entry.hash] = entry
        while len(self._entries) > self.settings.max_entries:
            self._remove(next(iter(self._entries.values())), evicted=True)

    def _index_entry(self, entry: Entry, vector: np.ndarray) -> None:
        if not entry.alive or entry.namespace_key is None or self._index is None:
            return
        ns = self._namespaces.get(entry.namespace_hash)
        if ns is None:
            ns = self._namespaces[entry.namespace_hash] = Namespace(entry.namespace_key)
        elif ns.key != entry.namespace_key:
            return  # hash collision between two namespaces: this entry serves exact matches only
        entry.namespace, entry.label = ns, self._next_label
        if self.verifier is not None:  # it scores the pair from both vectors; otherwise the index has it
            entry.vector = vector
        self._next_label += 1
        ns.labels[entry.label] = entry
        self._index.add(ns, entry.label, vector)

    def _remove(self, entry: Entry, *, evicted: bool = False, expired: bool = False) -> None:
        if not entry.alive:
            return
        entry.alive = False
        if self._entries.get(entry.hash) is entry:
            del self._entries[entry.hash]
            del self._by_age[entry.hash]
        ns = entry.namespace
        if ns is not None and self._index is not None:
            ns.labels.pop(entry.label, None)
            self._index.delete(ns, entry.label)
            if not ns.labels and self._namespaces.get(entry.namespace_hash) is ns:
                del self._namespaces[entry.namespace_hash]  # its index goes once queued work is done
        self.stats.evictions += evicted
        self.stats.expirations += expired

    def sweep(self) -> int:
        """Drop expired entries (oldest first, so this stops at the first live one)."""
        now = self.clock()
        expired = []
        for entry in self._by_age.values():
            if entry.expires > now:
                break
            expired.append(entry)
        for entry in expired:
            self._remove(entry, expired=True)
        return len(expired)

    def metrics(self) -> dict[str, int]:
        """Counters plus current sizes, for the observability exporter."""
        return {**self.stats.as_dict(), "entries": len(self._entries), "namespaces": len(self._namespaces)}

    # -- persistence (persist.py) --------------------------------------------------------------------------------

    async def save(self) -> int:
        """Write a snapshot now; returns the number of entries written."""
        return await persist.save(self)

    async def load(self) -> int:
        """Load the snapshot (start-up only); returns the entries loaded. A bad file is logged and ignored."""
        return await persist.load(self)


async def _iterate(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk
