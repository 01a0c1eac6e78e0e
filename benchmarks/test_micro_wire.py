"""Micro-benchmarks of the wire hot path: request parsing, response serialisation, SSE encoding.

Not part of the default test run (`testpaths = ["tests"]`). Run with:
    .venv/bin/python -m pytest benchmarks/test_micro_wire.py --benchmark-columns=min,median,ops
"""

from __future__ import annotations

import orjson
import pytest

from router.http.openai import ChunkEncoder, completion_body, parse_chat_request, parse_json
from router.types import Completion, Usage

pytestmark = pytest.mark.benchmark(group="wire")

REQUEST = orjson.dumps(
    {
        "model": "smollm2-135m-instruct",
        "messages": [
            {"role": "system", "content": "Answer with one label only."},
            {
                "role": "user",
                "content": "Classify the sentiment: " + "The battery lasts two days and charging is quick. " * 4,
            },
        ],
        "max_tokens": 16,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
ANSWER = Completion("positive " * 40, "stop", Usage(120, 40))


def test_orjson_loads_request(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(orjson.loads, REQUEST)


def test_parse_chat_request(benchmark) -> None:  # type: ignore[no-untyped-def]
    req = benchmark(lambda: parse_chat_request(parse_json(REQUEST)))
    assert req.stream and req.sampling.max_tokens == 16


def test_completion_body(benchmark) -> None:  # type: ignore[no-untyped-def]
    body = benchmark(completion_body, "chatcmpl-1", "smollm2-135m-instruct", ANSWER)
    assert orjson.loads(body)["usage"]["completion_tokens"] == 40


def test_sse_delta(benchmark) -> None:  # type: ignore[no-untyped-def]
    enc = ChunkEncoder("chatcmpl-1", "smollm2-135m-instruct", include_usage=True)
    out = benchmark(enc.delta, " positive")
    assert out.startswith(b"data: ") and out.endswith(b"\n\n")


def test_sse_whole_stream_of_16_tokens(benchmark) -> None:  # type: ignore[no-untyped-def]
    """One response's worth of SSE: first, 16 deltas, finish + usage + [DONE]."""
    enc = ChunkEncoder("chatcmpl-1", "smollm2-135m-instruct", include_usage=True)
    tokens = [f" tok{i}" for i in range(16)]

    def stream() -> bytes:
        parts = [enc.first()]
        parts += [enc.delta(t) for t in tokens]
        parts.append(enc.finish("stop", Usage(120, 16)))
        return b"".join(parts)

    assert benchmark(stream).endswith(b"data: [DONE]\n\n")
