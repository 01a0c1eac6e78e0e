"""Engines under test, one session-wide instance each, all on the real SmolLM2-135M-Instruct model.

- `llamacpp`: the in-process batched llama.cpp engine.
- `openai_http`: the external-engine adapter, talking to a second, real router (its own event loop and engine).
- `vllm`: the in-process vLLM engine on the converted checkpoint. It runs only in `.venv-vllm` (made by
  scripts/setup_vllm_cpu.sh): `.venv-vllm/bin/python -m pytest -m vllm tests/engines`. Elsewhere it is skipped.

Every engine gets the same capacity (8 slots, no waiting room) so the tests can both fill it and run 8 streams.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from router.config import CacheSettings, ModelSettings, Settings
from router.types import ChatRequest, Message, SamplingParams

SLOTS = 8
N_CTX = 512
ROOT = Path(__file__).resolve().parents[2]
VLLM_MODEL = os.environ.get("ROUTER_VLLM_MODEL", str(ROOT / ".venv-vllm" / "models" / "smollm2-135m-instruct"))


def pytest_configure(config: pytest.Config) -> None:
    # Also listed in pyproject.toml; registered here too so this directory stands on its own.
    config.addinivalue_line("markers", "vllm: needs vllm (run in .venv-vllm, see scripts/setup_vllm_cpu.sh)")


@dataclass
class Case:
    name: str
    engine: object
    in_flight: Callable[[], int]  # requests the engine (or its upstream) is still working on
    logprobs: bool
    in_process: bool
    slots: int = SLOTS


def local_settings(name: str, **over: object) -> ModelSettings:
    fields: dict[str, object] = {
        "name": name,
        "n_ctx": N_CTX,
        "n_parallel": SLOTS,
        "max_queue_requests": 0,
        "default_max_tokens": 64,
    }
    fields.update(over)
    return ModelSettings(**fields)  # type: ignore[arg-type]


def chat(text: str, max_tokens: int | None = 8, system: str | None = None, **sampling: object) -> ChatRequest:
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", text))
    sampling.setdefault("temperature", 0.0)
    return ChatRequest(
        model="m",
        messages=messages,
        sampling=SamplingParams(max_tokens=max_tokens, **sampling),  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def llamacpp_case() -> AsyncIterator[Case]:
    pytest.importorskip("llama_cpp")
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine

    engine = BatchedLlamaCppEngine(local_settings("smollm2"))
    await engine.start()
    yield Case("llamacpp", engine, lambda: engine.stats.slots_busy + engine.stats.queued, True, True)
    await engine.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def openai_http_case() -> AsyncIterator[Case]:
    pytest.importorskip("llama_cpp")
    from router.app import REGISTRY
    from router.engines.openai_http import OpenAIHTTPEngine
    from tests.support.server import ServerThread

    # The upstream's response cache off: these tests measure the engine behind it, not replayed answers.
    upstream_settings = Settings(models=[local_settings("upstream")], cache=CacheSettings(enabled=False))
    upstream = await asyncio.to_thread(ServerThread(upstream_settings).start)
    inner = upstream.app[REGISTRY].engines["upstream"]
    engine = OpenAIHTTPEngine("ext", base_url=upstream.base_url + "/v1", upstream_model="upstream")
    await engine.start()
    yield Case("openai_http", engine, lambda: inner.stats.slots_busy + inner.stats.queued, False, False)  # type: ignore[attr-defined]
    await engine.aclose()
    await asyncio.to_thread(upstream.stop)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vllm_case() -> AsyncIterator[Case]:
    pytest.importorskip("vllm")
    if not _has_checkpoint(VLLM_MODEL):
        pytest.skip(f"no converted checkpoint at {VLLM_MODEL}: run scripts/setup_vllm_cpu.sh")
    from router.engines.vllm import VLLMEngine

    engine = VLLMEngine(local_settings("smollm2", engine="vllm", path=VLLM_MODEL, dtype="bfloat16"))
    await engine.start()
    yield Case("vllm", engine, lambda: engine.stats.slots_busy + engine.stats.queued, True, True)
    await engine.aclose()


def _has_checkpoint(path: str) -> bool:
    return Path(path, "config.json").is_file()


ENGINES = ["llamacpp", "openai_http", pytest.param("vllm", marks=pytest.mark.vllm)]


@pytest.fixture(params=ENGINES)
def case(request: pytest.FixtureRequest) -> Case:
    return request.getfixturevalue(f"{request.param}_case")
