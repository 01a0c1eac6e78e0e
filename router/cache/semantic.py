"""Nearest-neighbour search over prompt embeddings: one hnswlib index per namespace (hard key).

hnswlib is not safe to use from two threads at once when one of them writes (`add_items` against `knn_query`,
and `resize_index` against anything), and none of it should run on the event loop. So every index operation of
every namespace runs on one dedicated thread, in the order it was submitted: an add submitted before a delete
happens before it, and a search never overlaps a write. Each operation takes microseconds, so one thread is not
the bottleneck on this machine; the event loop only waits for searches.

Vectors are unit length (see embed.py), so the inner-product space gives cosine similarity = 1 - distance.
Capacity: an index starts small and doubles (`resize_index`) when full; deleted slots are reused first
(`allow_replace_deleted`), so a namespace at steady state never grows.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INITIAL_CAPACITY = 16


class Namespace:
    """One hard key's index. `labels` (label → cache entry) belongs to the event loop; `_index` to the thread."""

    __slots__ = ("_deleted", "_index", "key", "labels")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.labels: dict[int, Any] = {}
        self._index: Any = None
        self._deleted = 0  # marked-deleted slots waiting to be reused


class SemanticIndex:
    def __init__(self, dim: int, *, m: int = 16, ef_construction: int = 100, ef_search: int = 32) -> None:
        import hnswlib  # noqa: F401  (fail at start-up, not on the first store, when it is missing)

        self.dim = dim
        self._m = m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cache-index")

    # -- from the event loop -------------------------------------------------------------------------------------

    def add(self, ns: Namespace, label: int, vector: np.ndarray) -> None:
        """Queue an insert (returns at once; ordered before any later operation)."""
        self._submit(self._add, ns, label, vector)

    def delete(self, ns: Namespace, label: int) -> None:
        self._submit(self._delete, ns, label)

    async def search(self, ns: Namespace, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest labels and their cosine similarity, best first."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._search, ns, vector, k)

    async def vectors(self, ns: Namespace, labels: list[int]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._vectors, ns, labels)

    async def drain(self) -> None:
        """Wait until every queued operation has run."""
        await asyncio.get_running_loop().run_in_executor(self._thread, lambda: None)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=False)

    def _submit(self, fn: Any, *args: Any) -> None:
        self._thread.submit(fn, *args).add_done_callback(_log_failure)

    # -- on the index thread -------------------------------------------------------------------------------------

    def _add(self, ns: Namespace, label: int, vector: np.ndarray) -> None:
        import hnswlib

        index = ns._index
        if index is None:
            index = hnswlib.Index(space="ip", dim=self.dim)
            index.init_index(
                max_elements=INITIAL_CAPACITY,
                M=self._m,
                ef_construction=self._ef_construction,
                allow_replace_deleted=True,
            )
            index.set_ef(self._ef_search)
            ns._index = index
        if ns._deleted:
            ns._deleted -= 1  # replace_deleted below takes one of those slots
        elif index.element_count >= index.get_max_elements():
            index.resize_index(index.get_max_elements() * 2)
        index.add_items(vector.reshape(1, -1), np.array([label], dtype=np.uint64), replace_deleted=True)

    def _delete(self, ns: Namespace, label: int) -> None:
        if ns._index is None:
            return
        try:
            ns._index.mark_deleted(label)
        except RuntimeError:  # never added (its add failed) or already deleted
            return
        ns._deleted += 1

    def _search(self, ns: Namespace, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        index = ns._index
        if index is None:
            return []
        live = index.element_count - ns._deleted
        k = min(k, live)
        if k <= 0:
            return []
        try:
            labels, distances = index.knn_query(vector.reshape(1, -1), k=k)
        except RuntimeError:
            # Fewer than k reachable live elements (many deletions): settle for the nearest one.
            try:
                labels, distances = index.knn_query(vector.reshape(1, -1), k=1)
            except RuntimeError:
                return []
        return [(int(lbl), 1.0 - float(d)) for lbl, d in zip(labels[0], distances[0], strict=True)]

    def _vectors(self, ns: Namespace, labels: list[int]) -> np.ndarray:
        if ns._index is None or not labels:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(ns._index.get_items(labels, return_type="numpy"), dtype=np.float32)


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("cache index operation failed", exc_info=future.exception())
