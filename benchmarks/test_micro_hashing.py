"""Micro-benchmarks of hashing and scoring on the routing path: cache-key hashing and the complexity scorer.

.venv/bin/python -m pytest benchmarks/test_micro_hashing.py --benchmark-columns=min,median,ops
"""

from __future__ import annotations

import hashlib

import orjson
import pytest

pytestmark = pytest.mark.benchmark(group="hashing")

MESSAGES = [
    {"role": "system", "content": "You are a careful assistant."},
    {
        "role": "user",
        "content": "Plan the migration of a 2 TB PostgreSQL database with under 5 minutes of downtime. " * 3,
    },
]
# What a cache's hard key covers: tenant, target, sampling, format, and the messages, canonically serialised.
KEY_MATERIAL = orjson.dumps(
    {"tenant": "t1", "model": "local", "temperature": 0.0, "max_tokens": 256, "messages": MESSAGES},
    option=orjson.OPT_SORT_KEYS,
)
TEXT = MESSAGES[1]["content"]


def test_canonical_key_blake2b(benchmark) -> None:  # type: ignore[no-untyped-def]
    def key() -> bytes:
        material = orjson.dumps(
            {"tenant": "t1", "model": "local", "temperature": 0.0, "max_tokens": 256, "messages": MESSAGES},
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.blake2b(material, digest_size=16).digest()

    assert len(benchmark(key)) == 16


def test_blake2b_only(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(lambda: hashlib.blake2b(KEY_MATERIAL, digest_size=16).digest())


def test_fnv1a_64(benchmark) -> None:  # type: ignore[no-untyped-def]
    fastpath = pytest.importorskip("router.fastpath")
    h = benchmark(fastpath.fnv1a_64, KEY_MATERIAL)
    assert 0 <= h < 2**64
    benchmark.extra_info["compiled"] = fastpath.COMPILED


def test_fnv1a_64_pure_python(benchmark) -> None:  # type: ignore[no-untyped-def]
    twin = pytest.importorskip("router._fastpath_py")
    benchmark(twin.fnv1a_64, KEY_MATERIAL)


def test_complexity_score(benchmark) -> None:  # type: ignore[no-untyped-def]
    scoring = pytest.importorskip("router.routing.scoring")
    scorer = scoring.ComplexityScorer()
    benchmark(scorer.score, TEXT)
    benchmark.extra_info["compiled"] = pytest.importorskip("router.fastpath").COMPILED
