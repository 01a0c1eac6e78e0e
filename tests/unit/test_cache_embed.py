"""The embedding model and its micro-batcher."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from router.cache import Embedded, EmbeddingService, MicroBatcher
from router.config import EmbeddingSettings
from router.engines.embedded import default_chat_model
from router.errors import EngineError
from tests.support.cache import embeddings  # noqa: F401  (fixture)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def fake_encode(log: list[list[str]], delay: float = 0.0):
    def encode(texts: list[str]) -> Embedded:
        assert threading.current_thread() is not threading.main_thread()  # never on the event loop
        log.append(list(texts))
        time.sleep(delay)
        vectors = np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)
        return Embedded(vectors, [len(t) for t in texts], [False] * len(texts))

    return encode


async def test_concurrent_calls_are_coalesced_and_answered_in_order() -> None:
    log: list[list[str]] = []
    batcher = MicroBatcher(fake_encode(log, delay=0.02), max_batch=8, max_wait_s=0.002)
    await batcher.embed(["warm"])  # the first batch runs alone
    results = await asyncio.gather(*(batcher.embed(["x" * i]) for i in range(1, 17)))
    assert [r.vectors[0, 0] for r in results] == list(range(1, 17))
    assert max(len(b) for b in log) == 8 and len(log) <= 4  # 16 calls in 2-3 batches, never more than 8
    assert batcher.stats.calls == 17 and batcher.stats.items == 17
    await batcher.aclose()


async def test_a_caller_alone_is_not_kept_waiting() -> None:
    batcher = MicroBatcher(fake_encode([]), max_batch=8, max_wait_s=0.5)
    start = time.perf_counter()
    for _ in range(3):
        await batcher.embed(["solo"])
    assert time.perf_counter() - start < 0.5  # no 0.5 s wait for company that is not coming
    await batcher.aclose()


async def test_big_calls_are_split_into_bounded_batches() -> None:
    log: list[list[str]] = []
    batcher = MicroBatcher(fake_encode(log), max_batch=4)
    result = await batcher.embed([str(i) * (i + 1) for i in range(10)])
    assert [len(b) for b in log] == [4, 4, 2]
    assert result.vectors[:, 0].tolist() == [float(i + 1) for i in range(10)]
    await batcher.aclose()


async def test_a_failing_batch_fails_its_callers_only() -> None:
    calls = 0

    def encode(texts: list[str]) -> Embedded:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return fake_encode([])(texts)

    batcher = MicroBatcher(encode, max_batch=4)
    with pytest.raises(EngineError, match="boom"):
        await batcher.embed(["a"])
    assert (await batcher.embed(["bb"])).vectors[0, 0] == 2.0
    await batcher.aclose()


async def test_a_cancelled_caller_is_skipped() -> None:
    log: list[list[str]] = []
    batcher = MicroBatcher(fake_encode(log, delay=0.05), max_batch=8)
    first = asyncio.ensure_future(batcher.embed(["running"]))
    await asyncio.sleep(0.01)
    gone = asyncio.ensure_future(batcher.embed(["gone"]))
    await asyncio.sleep(0)
    gone.cancel()
    kept = await batcher.embed(["kept"])
    await first
    assert kept.vectors[0, 0] == 4.0 and ["gone"] not in log and all("gone" not in b for b in log)
    await batcher.aclose()


@pytest.mark.model
async def test_real_model_vectors(embeddings) -> None:  # noqa: F811
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat", "Quarterly revenue grew by 12%.", "hi"]
    batched = await embeddings.embed(texts)
    single = [await embeddings.embed([t]) for t in texts]
    assert batched.vectors.shape == (4, 384) and batched.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched.vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batched.vectors, np.concatenate([s.vectors for s in single]), atol=1e-5)
    assert batched.tokens == [s.tokens[0] for s in single]
    sims = batched.vectors @ batched.vectors.T
    assert sims[0, 1] > 0.8 > sims[0, 2]
    long = await embeddings.embed(["word " * 400])
    assert long.truncated == [True] and long.tokens == [256]


@pytest.mark.model
@pytest.mark.slow
async def test_gguf_model_through_llamacpp() -> None:
    # Any GGUF works; the installed chat model stands in for an embedding model (mean-pooled).
    service = EmbeddingService(
        EmbeddingSettings(engine="llamacpp", path=str(default_chat_model()), name="smol-embed", max_tokens=64)
    )
    await service.start()
    assert service.ready, service.failure
    texts = ["hello world", "a sentence about cats and dogs", "word " * 80]
    batched = await service.embed(texts)
    single = np.concatenate([(await service.embed([t])).vectors for t in texts])
    assert batched.vectors.shape == (3, service.dim) and np.allclose(batched.vectors, single, atol=1e-4)
    assert batched.truncated == [False, False, True]
    await service.aclose()


async def test_a_missing_model_is_reported_not_raised(tmp_path) -> None:
    service = EmbeddingService(EmbeddingSettings(path=str(tmp_path / "nope.onnx")))
    await service.start()
    assert not service.ready and "not found" in (service.failure or "")
    with pytest.raises(EngineError):
        await service.embed(["x"])
