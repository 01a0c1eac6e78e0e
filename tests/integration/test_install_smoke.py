"""The freshly installed build answers a multi-token chat and an embedding request, in this very process.

This is the test that would have caught the AMX segfault: it runs the engine *in process* (no worker to contain
a crash), so a native fault in the installed llama.cpp kills the test run and CI fails loudly, instead of being
absorbed by the supervisor that production relies on.
"""

from __future__ import annotations

import numpy as np
import pytest

from router.config import EmbeddingSettings, ModelSettings
from router.types import ChatRequest, Completion, Message, SamplingParams

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]

LONG = (
    "Summarise the following notes in one sentence. The quarterly review covered hiring, the new office, the "
    "migration of the billing system to the new provider, and the plan for the spring release. "
) * 6


async def test_multi_token_chat_in_process() -> None:
    pytest.importorskip("llama_cpp")
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine

    engine = BatchedLlamaCppEngine(ModelSettings(name="smoke", n_ctx=1024, n_parallel=2, isolation="inprocess"))
    await engine.start()
    try:
        assert engine.cpu is not None and engine.cpu.refusal is None
        request = ChatRequest(
            model="smoke",
            messages=[Message("system", "You are concise."), Message("user", LONG)],
            sampling=SamplingParams(temperature=0.0, max_tokens=16),
        )
        answer = await Completion.gather(engine.generate(request))
        assert answer.usage.prompt_tokens > 150  # a multi-token prompt: the batched matmul path ran
        assert answer.usage.completion_tokens > 1 and answer.text.strip()
    finally:
        await engine.aclose()


async def test_embedding_request_in_process() -> None:
    from router.cache import EmbeddingService

    service = EmbeddingService(EmbeddingSettings())
    await service.start()
    try:
        assert service.ready, service.failure
        result = await service.embed(["a multi-token sentence about routers", LONG])
        assert result.vectors.shape == (2, service.dim)
        assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-3)
    finally:
        await service.aclose()
