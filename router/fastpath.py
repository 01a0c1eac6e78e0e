"""The hot-path functions: the compiled extension when built, else its pure-Python twin.

`ROUTER_NO_EXTENSIONS=1` forces the twin (the parity tests and benchmarks import both directly).
"""

from __future__ import annotations

import os

if os.environ.get("ROUTER_NO_EXTENSIONS") == "1":
    from router._fastpath_py import LinearRouter, Scorer, estimate_tokens, features, fnv1a_64, hashed_buckets

    COMPILED = False
else:
    try:
        from router._fastpath import (  # type: ignore[no-redef]
            LinearRouter,
            Scorer,
            estimate_tokens,
            features,
            fnv1a_64,
            hashed_buckets,
        )

        COMPILED = True
    except ImportError:
        from router._fastpath_py import LinearRouter, Scorer, estimate_tokens, features, fnv1a_64, hashed_buckets

        COMPILED = False

__all__ = ["COMPILED", "LinearRouter", "Scorer", "estimate_tokens", "features", "fnv1a_64", "hashed_buckets"]
