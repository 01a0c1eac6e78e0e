"""The compiled hot path and its pure-Python twin return identical results on any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import _fastpath_py as twin

compiled = pytest.importorskip("router._fastpath", reason="extension not built (ROUTER_NO_EXTENSIONS=1)")

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_fnv1a_parity(data: bytes) -> None:
    assert compiled.fnv1a_64(data) == twin.fnv1a_64(data)


@settings(max_examples=400, deadline=None)
@given(any_text)
def test_estimate_tokens_parity(text: str) -> None:
    assert compiled.estimate_tokens(text) == twin.estimate_tokens(text)


@pytest.mark.parametrize(
    "text", ["", "\x00", "\ud800 lone surrogate", "a" * 10_000, "你好世界", "🙂🙃", "def f(x):\n    return x**2\n"]
)
def test_edge_inputs(text: str) -> None:
    assert compiled.estimate_tokens(text) == twin.estimate_tokens(text)
    data = text.encode("utf-8", "surrogatepass")
    assert compiled.fnv1a_64(data) == twin.fnv1a_64(data)


def test_known_values() -> None:
    # Published FNV-1a 64 test vectors.
    assert twin.fnv1a_64(b"") == 0xCBF29CE484222325
    assert twin.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert twin.estimate_tokens("Hello, world!") == 4
    assert twin.estimate_tokens("internationalization") == 4
