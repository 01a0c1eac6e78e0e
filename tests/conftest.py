from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from router.config import DEFAULT_MODEL_NAME, Settings
from tests.fakes.frontier import FakeFrontier
from tests.support.server import ServerThread, running

MODEL = DEFAULT_MODEL_NAME

# Ledgers, caches and other state of the servers under test go to a scratch directory, never the user's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="hybrid-router-tests-")


@pytest.fixture(scope="session")
def router_server() -> Iterator[ServerThread]:
    """The router on the embedded default model (real SmolLM2 through llama.cpp), shared by the session."""
    with running(Settings()) as server:
        yield server


@pytest.fixture(scope="session")
def base_url(router_server: ServerThread) -> str:
    return router_server.base_url


@pytest.fixture()
def openai_client(base_url: str):
    import openai

    with openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeFrontier]:
    """The fake frontier upstream (Anthropic and OpenAI wire formats), one per test module."""
    f = FakeFrontier().start()
    yield f
    f.stop()
