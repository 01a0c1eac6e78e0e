from __future__ import annotations

import pytest

from router.errors import InvalidRequest
from router.http.caching import cache_controls
from router.http.openai import parse_chat_request

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({}, {}, (True, True)),
        ({}, {"cache-control": "no-cache"}, (False, True)),
        ({}, {"cache-control": "No-Store"}, (True, False)),
        ({}, {"cache-control": "no-cache, no-store"}, (False, False)),
        ({}, {"pragma": "no-cache"}, (False, True)),
        ({}, {"cache-control": "max-age=0"}, (True, True)),
        ({"cache": False}, {}, (False, False)),
        ({"cache": True}, {"cache-control": "no-store"}, (True, False)),
        ({"cache": {"no-cache": True}}, {}, (False, True)),
        ({"cache": {"no-store": True}}, {}, (True, False)),
    ],
)
def test_cache_controls(body, headers, expected) -> None:
    assert cache_controls(body, headers) == expected


@pytest.mark.parametrize("value", ["no", 0, {"no-cache": "yes"}, {"nocache": True}])
def test_bad_cache_field_is_a_400(value) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request({**BODY, "cache": value})
    assert caught.value.param == "cache"


def test_parse_chat_request_carries_the_controls() -> None:
    request = parse_chat_request(BODY, {"cache-control": "no-cache"})
    assert (request.cache_lookup, request.cache_store) == (False, True)
