from __future__ import annotations

import pytest

from router.config import ConfigError, Settings, StateSettings, load_settings
from router.state.health import _redact


def test_defaults_are_in_process() -> None:
    assert Settings().state == StateSettings(url="memory", budgets_on_error="closed", limits_on_error="local")


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock"])
def test_redis_urls_accepted(url: str) -> None:
    assert StateSettings(url=url).url == url


def test_bad_url_and_unknown_key_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("state: {url: 'postgres://db'}\n")
    with pytest.raises(ConfigError, match=r"state\.url"):
        load_settings(bad, environ={})
    bad.write_text("state: {urll: memory}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(bad, environ={})


def test_passwords_never_shown() -> None:
    assert _redact("redis://user:s3cret@redis:6379/0") == "redis://***@redis:6379/0"
