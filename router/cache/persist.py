"""Snapshots of the response cache: `save` writes its entries and their vectors, `load` reads them back at start-up
(snapshot.py does the atomic file format). A snapshot's vectors are only reused when today's embedding model maps
the probe sentence (entry.PROBE) to the same vector."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from router.cache import snapshot
from router.cache.entry import Entry, entry_from_record, entry_record
from router.cache.semantic import Namespace

if TYPE_CHECKING:
    from router.cache.store import ResponseCache

log = logging.getLogger("router.cache.store")


async def save(cache: ResponseCache) -> int:
    """Write a snapshot now; returns the number of entries written."""
    assert cache.path is not None
    cache.sweep()
    entries = list(cache._by_age.values())
    vectors: dict[int, np.ndarray] = {}  # id(entry) → its vector
    if cache._index is not None:
        groups: dict[int, tuple[Namespace, list[Entry]]] = {}
        for e in entries:
            if e.namespace is not None and e.alive:
                groups.setdefault(id(e.namespace), (e.namespace, []))[1].append(e)
        for ns, members in groups.values():
            rows = await cache._index.vectors(ns, [e.label for e in members])
            vectors.update((id(e), row) for e, row in zip(members, rows, strict=True) if np.isfinite(row).all())
    records, matrix = [], []
    for e in entries:
        row = vectors.get(id(e))
        if row is not None:
            matrix.append(row)
        records.append([*entry_record(e), len(matrix) - 1 if row is not None else -1])
    dim = cache._index.dim if cache._index is not None else 0
    meta = {
        "dim": dim,
        "probe": cache._probe.tolist() if cache._probe is not None else None,
        "entries": records,
    }
    array = np.stack(matrix) if matrix else np.zeros((0, dim), dtype=np.float32)
    await asyncio.to_thread(snapshot.write, cache.path, meta, array)
    cache.stats.snapshots += 1
    return len(records)


async def load(cache: ResponseCache) -> int:
    """Load the snapshot (start-up only); returns the entries loaded. A bad file is logged and ignored."""
    assert cache.path is not None
    if not cache.path.exists():
        return 0
    try:
        meta, vectors = await asyncio.to_thread(snapshot.read, cache.path)
        decoded = _decode(meta, vectors, cache.clock())
    except snapshot.SnapshotError as exc:
        cache.stats.snapshot_errors += 1
        log.error("response cache: snapshot %s ignored: %s", cache.path, exc)
        return 0
    semantic = cache._index is not None and _compatible(cache, meta, vectors)
    if cache._index is not None and not semantic and len(vectors):
        log.warning(
            "response cache: snapshot %s was made with another embedding model; its entries serve exact matches only",
            cache.path,
        )
    for entry, vector in decoded[-cache.settings.max_entries :]:
        cache._insert(entry)
        if semantic and vector is not None:
            cache._index_entry(entry, vector)
        elif not semantic:
            entry.namespace_key = None
    log.info("response cache: %d entries loaded from %s", len(cache._entries), cache.path)
    return len(cache._entries)


def _compatible(cache: ResponseCache, meta: dict[str, Any], vectors: np.ndarray) -> bool:
    probe = meta.get("probe")
    if cache._probe is None or not isinstance(probe, list) or len(probe) != len(cache._probe):
        return False
    if vectors.size and vectors.shape[1] != len(cache._probe):
        return False
    return float(np.dot(np.asarray(probe, dtype=np.float32), cache._probe)) >= 0.9999


def _decode(meta: dict[str, Any], vectors: np.ndarray, now: float) -> list[tuple[Entry, np.ndarray | None]]:
    out = []
    try:
        for rec in meta["entries"]:
            (key, model, text, finish, p_tokens, c_tokens, calls, created, expires, ns_key, prompt, row) = rec
            if expires <= now:
                continue
            entry = entry_from_record(
                key, model, text, finish, p_tokens, c_tokens, calls, created, expires, ns_key, prompt
            )
            if not (isinstance(text, str) and isinstance(model, str) and isinstance(prompt, str)):
                raise TypeError("entry fields of the wrong type")
            out.append((entry, vectors[row] if row >= 0 else None))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise snapshot.SnapshotError(f"bad entry: {exc}") from None
    out.sort(key=lambda pair: pair[0].created)
    return out
