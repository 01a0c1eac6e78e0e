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


# -- complexity scorer -------------------------------------------------------------------------------------------

from router.routing.scoring import DEFAULT_WEIGHTS, Weights  # noqa: E402

WEIGHTS = (Weights.default().bias, *Weights.default().weights)
weights = st.lists(st.floats(-20, 20, allow_nan=False), min_size=len(DEFAULT_WEIGHTS) + 1, max_size=15)
markers = st.sampled_from(
    ["def ", "```", "\n1. ", "\n- ", "?", "=", "∑", "classify ", "PLAN ", "Traceback", "π", "你好", "Привет", "\x00"]
)
mixed_text = st.lists(any_text | markers, max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(mixed_text)
def test_scorer_parity_default_weights(text: str) -> None:
    assert compiled.Scorer(WEIGHTS).score(text) == twin.Scorer(WEIGHTS).score(text)
    assert compiled.features(text) == twin.features(text)


@settings(max_examples=200, deadline=None)
@given(mixed_text, weights)
def test_scorer_parity_any_weights(text: str, w: list[float]) -> None:
    a, b = compiled.Scorer(w).score(text), twin.Scorer(w).score(text)
    assert a == b  # bit-identical floats, not approximately equal
    assert 0.0 <= a[0] <= 1.0


def test_scorer_parity_on_a_megabyte() -> None:
    text = ("Explain why this code fails: ```def f(x): return x / 0``` and fix it? 1. step\n- bullet π 你好 " * 12000)[
        : 1 << 20
    ]
    assert compiled.Scorer(WEIGHTS).score(text) == twin.Scorer(WEIGHTS).score(text)


def test_wrong_weight_count_is_rejected() -> None:
    for impl in (compiled, twin):
        with pytest.raises(ValueError, match="expected 15 weights"):
            impl.Scorer([1.0, 2.0])


# -- learned router ----------------------------------------------------------------------------------------------

from router.routing import learned  # noqa: E402

SHIPPED = learned.LearnedRouter(learned.DEFAULT_MODEL)
SHIPPED_TWIN = learned.LearnedRouter(learned.DEFAULT_MODEL, pure_python=True)
words = st.sampled_from(["Classify", "design", "Schritt", "für", "设计", "😀", "x_1", "2024", "ÉTÉ", "Ωμέγα", "\n"])
prompt_text = st.lists(any_text | words, max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(prompt_text, st.integers(8, 24))
def test_hashed_features_parity(text: str, bits: int) -> None:
    assert compiled.hashed_buckets(text, bits) == twin.hashed_buckets(text, bits)


@settings(max_examples=200, deadline=None)
@given(prompt_text)
def test_learned_router_parity_on_the_shipped_model(text: str) -> None:
    assert SHIPPED.predict(text) == SHIPPED_TWIN.predict(text)


@pytest.mark.parametrize("text", ["", "a", "a" * 50_000, "word " * 5000, "你" * 9000, "\ud800", "\x00 \x00"])
def test_learned_router_parity_on_edge_inputs(text: str) -> None:
    assert SHIPPED.predict(text) == SHIPPED_TWIN.predict(text)
    assert all(len(family) <= 4096 for family in compiled.hashed_buckets(text, 18))


def test_hashing_folds_case_and_digits_but_keeps_scripts_apart() -> None:
    assert twin.hashed_buckets("Order 123", 18) == twin.hashed_buckets("ORDER 999", 18)
    assert twin.hashed_buckets("Привет", 18) == twin.hashed_buckets("ПРИВЕТ", 18)
    assert twin.hashed_buckets("order", 18) != twin.hashed_buckets("ordre", 18)
