"""The pair micro-batcher in front of a cross-encoder: coalescing, order, splitting, errors, back-pressure."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from router.engines.rerank import PairBatcher, Scores
from router.errors import EngineError, Overloaded


class LengthScorer:
    """A deterministic scorer (score = document length): records the batch sizes it was called with."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, pairs: list[tuple[str, str]]) -> Scores:
        self.gate.wait(5)
        self.batches.append(len(pairs))
        return Scores(np.array([len(d) for _, d in pairs], dtype=np.float32), sum(len(q) + len(d) for q, d in pairs))


async def test_concurrent_calls_share_batches_and_keep_their_order() -> None:
    scorer = LengthScorer()
    scorer.gate.clear()  # hold the first batch so that the others queue up behind it
    batcher = PairBatcher(scorer, max_batch=32, max_wait_s=0.002, max_pending=1024)
    calls = [[("q", "x" * (i + j)) for j in range(3)] for i in range(8)]
    tasks = [asyncio.create_task(batcher.score(c)) for c in calls]
    await asyncio.sleep(0.05)
    scorer.gate.set()
    results = await asyncio.gather(*tasks)
    for call, result in zip(calls, results, strict=True):
        assert result.values.tolist() == [len(d) for _, d in call]
    assert len(scorer.batches) < len(calls) and sum(scorer.batches) == 24
    await batcher.aclose()


async def test_a_large_call_is_split_at_max_batch() -> None:
    scorer = LengthScorer()
    batcher = PairBatcher(scorer, max_batch=4, max_wait_s=0, max_pending=1024)
    pairs = [("q", "d" * i) for i in range(10)]
    result = await batcher.score(pairs)
    assert result.values.tolist() == list(range(10)) and max(scorer.batches) <= 4
    await batcher.aclose()


async def test_a_failing_model_fails_its_callers_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def flaky(pairs: list[tuple[str, str]]) -> Scores:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return Scores(np.ones(len(pairs), dtype=np.float32), 1)

    batcher = PairBatcher(flaky, max_batch=8, max_wait_s=0, max_pending=64)
    with pytest.raises(EngineError, match="boom"):
        await batcher.score([("q", "d")])
    assert (await batcher.score([("q", "d")])).values.tolist() == [1.0]
    await batcher.aclose()


async def test_too_many_pending_pairs_is_overloaded() -> None:
    batcher = PairBatcher(LengthScorer(), max_batch=8, max_wait_s=0, max_pending=16)
    with pytest.raises(Overloaded):
        await batcher.score([("q", "d")] * 17)
    await batcher.aclose()
