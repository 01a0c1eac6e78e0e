"""What the response cache keeps and answers with: an entry, a lookup's result, the counters (store.py uses them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import orjson

from router.cache.guard import Anchors, anchors
from router.cache.keys import Keys
from router.cache.semantic import Namespace
from router.cache.thresholds import EntryRecord
from router.fastpath import fnv1a_64
from router.types import Completion, ToolCall, Usage

STORABLE = frozenset({"stop", "length", "tool_calls"})
# Embedded once at start and kept in snapshots: a snapshot's vectors are only reused when today's model maps this
# sentence to the same vector, whatever the model's file or name.
PROBE = "hybrid-router cache compatibility probe: the quick brown fox jumps over the lazy dog."


@dataclass(slots=True)
class CacheStats:
    """Counters for the metrics exporter (they only ever grow)."""

    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypasses: int = 0
    stores: int = 0
    not_stored: int = 0  # finished with an error/cancel, or too long
    evictions: int = 0
    expirations: int = 0
    guard_rejections: int = 0  # semantic candidates above the threshold refused by the guard
    threshold_rejections: int = 0  # candidates that passed the guard, refused by the (learned) threshold
    verifier_rejections: int = 0  # candidates that passed the hard checks, scored below the verifier's threshold
    explorations: int = 0  # would-be semantic hits answered fresh to check the cached answer (explore_rate)
    verifications: int = 0  # fresh answers compared with a near candidate's: an observation each
    verified_wrong: int = 0  # of those, the candidate's answer differed
    feedback: int = 0  # outcomes reported through POST /v1/cache/feedback
    snapshots: int = 0
    snapshot_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True, eq=False)
class Entry:
    key: bytes
    hash: int
    model: str
    completion: Completion
    created: float
    expires: float
    namespace_key: bytes | None = None  # set when the entry is matched semantically too
    namespace_hash: int = 0
    prompt: str = ""
    namespace: Namespace | None = None  # once its vector is in the index
    label: int = -1
    alive: bool = True
    record: EntryRecord | None = None  # what it learned from outcomes (thresholds.py), from the first one on
    vector: np.ndarray | None = field(default=None, repr=False)  # its prompt's embedding, once indexed (verifier)
    _anchors: Anchors | None = None

    @property
    def id(self) -> str:
        """Stable for the entry's exact key (x-router-cache-entry; feedback by entry id)."""
        return f"{self.hash:016x}"

    @property
    def anchors(self) -> Anchors:
        if self._anchors is None:
            self._anchors = anchors(self.prompt)
        return self._anchors


@dataclass(slots=True)
class Lookup:
    """What `lookup` found, and what `recording` needs to store the answer on a miss."""

    status: str  # hit-exact | hit-semantic | miss | bypass
    keys: Keys | None = None
    store: bool = False
    similarity: float | None = None
    entry: Entry | None = None
    vector: np.ndarray | None = field(default=None, repr=False)
    tenant: str = ""
    probe: tuple[Entry, float] | None = None  # a near candidate (and its score) the fresh answer is compared with
    score: float | None = None  # the pair verifier's score of a semantic hit (verifier.py)

    @property
    def hit(self) -> bool:
        return self.entry is not None

    def completion(self) -> Completion:
        """The cached answer (a copy: callers may annotate it)."""
        assert self.entry is not None
        c = self.entry.completion
        return Completion(
            c.text,
            c.finish_reason,
            Usage(c.usage.prompt_tokens, c.usage.completion_tokens),
            None,
            list(c.tool_calls) if c.tool_calls else None,
        )

    def headers(self) -> dict[str, str]:
        headers = {"x-router-cache": self.status}
        if self.similarity is not None:
            headers["x-router-cache-similarity"] = f"{self.similarity:.4f}"
        if self.score is not None:
            headers["x-router-cache-score"] = f"{self.score:.4f}"
        if self.entry is not None:
            headers["x-router-cache-entry"] = self.entry.id
        return headers


BYPASS = Lookup("bypass")

_FOLD = re.compile(r"[\W_]+")


def same_answer(cached: Completion, fresh: Completion) -> bool:
    """Whether a fresh answer repeats the cached one (case, spacing and punctuation aside; the same tool calls).
    Strict on purpose: a reworded but right answer counts as wrong, which only raises thresholds."""
    calls = [[(c.name, c.arguments) for c in x.tool_calls or ()] for x in (cached, fresh)]  # ids are per call
    if calls[0] != calls[1]:
        return False
    return _FOLD.sub(" ", cached.text).strip().casefold() == _FOLD.sub(" ", fresh.text).strip().casefold()


def entry_tenant(entry: Entry) -> str:
    """The tenant in the entry's exact key (keys.py: ["exact", [version, api, tenant, …], messages])."""
    try:
        return str(orjson.loads(entry.key)[1][2])
    except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
        return ""


def entry_record(entry: Entry) -> list[Any]:
    """An entry's plain fields, in `entry_from_record`'s order (snapshots and the shared-cache stream)."""
    c = entry.completion
    return [
        entry.key.decode(),
        entry.model,
        c.text,
        c.finish_reason,
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
        [[t.id, t.name, t.arguments] for t in c.tool_calls] if c.tool_calls else None,
        entry.created,
        entry.expires,
        entry.namespace_key.decode() if entry.namespace_key is not None else None,
        entry.prompt,
    ]


def entry_from_record(
    key: str,
    model: str,
    text: str,
    finish: Any,
    p_tokens: int,
    c_tokens: int,
    calls: list[list[str]] | None,
    created: float,
    expires: float,
    ns_key: str | None,
    prompt: str,
) -> Entry:
    """An entry from its plain fields, as snapshots and the shared-cache stream carry them."""
    key_bytes = key.encode()
    ns_bytes = ns_key.encode() if ns_key is not None else None
    tool_calls = [ToolCall(*c) for c in calls] if calls else None
    completion = Completion(text, finish, Usage(int(p_tokens), int(c_tokens)), None, tool_calls)
    namespace_hash = fnv1a_64(ns_bytes) if ns_bytes is not None else 0
    hashes = fnv1a_64(key_bytes), namespace_hash
    return Entry(key_bytes, hashes[0], model, completion, float(created), float(expires), ns_bytes, hashes[1], prompt)
