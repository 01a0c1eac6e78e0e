"""The embedded model is served requantised to Q8_0 (made once, cached); a model named by path is served as given."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from router.config import ModelSettings
from router.engines.embedded import default_chat_model
from tests.engines.conftest import chat

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="session")]


async def served(settings: ModelSettings) -> tuple[str, str]:
    from router.engines.llamacpp_batched import BatchedLlamaCppEngine

    engine = BatchedLlamaCppEngine(settings)
    await engine.start()
    try:
        text = ""
        async for chunk in engine.generate(chat("Say hi", max_tokens=6)):
            text += chunk.text
        return engine.loaded_path, text
    finally:
        await engine.aclose()


async def test_auto_requantises_the_embedded_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_ROUTER_MODEL_CACHE", str(tmp_path))
    path, text = await served(ModelSettings(name="m"))
    assert Path(path).parent == tmp_path and ".Q8_0." in path and text.strip()
    made = os.stat(path).st_mtime_ns
    again, _ = await served(ModelSettings(name="m"))
    assert again == path and os.stat(again).st_mtime_ns == made  # reused, not made again
    assert os.listdir(tmp_path) == [Path(path).name]  # no leftover partial file


async def test_a_model_named_by_path_is_served_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_ROUTER_MODEL_CACHE", str(tmp_path))
    shipped = str(default_chat_model())
    path, _ = await served(ModelSettings(name="m", path=shipped))
    assert path == shipped and not os.listdir(tmp_path)
    forced, _ = await served(ModelSettings(name="m", path=shipped, requantize="Q8_0"))
    assert ".Q8_0." in forced
    none, _ = await served(ModelSettings(name="m", requantize="none"))
    assert none == shipped


async def test_an_unwritable_cache_serves_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("HYBRID_ROUTER_MODEL_CACHE", str(blocker / "models"))
    with caplog.at_level(logging.WARNING):
        path, text = await served(ModelSettings(name="m"))
    assert path == str(default_chat_model()) and text.strip()
    assert "serving" in caplog.text and "as shipped" in caplog.text
