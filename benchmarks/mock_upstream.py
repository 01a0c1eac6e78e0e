"""A fast OpenAI- and Anthropic-compatible mock upstream (see router/bench/mock.py for the behaviour).

    python benchmarks/mock_upstream.py --port 9001 [--latency-ms 0] [--chunks 8] [--chunk-interval-ms 0]

The implementation ships inside the package (`python -m router.bench.mock`), so the harness, the engine tests and
the overhead benchmark all use this one server.
"""

from __future__ import annotations

from router.bench.mock import main

if __name__ == "__main__":
    raise SystemExit(main())
