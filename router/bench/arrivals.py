"""Arrival processes for open-loop load: when each request is scheduled, as offsets from the start.

Gamma inter-arrival times with shape k and mean 1/rate have a coefficient of variation of 1/sqrt(k):
k = 1 is a Poisson process, k < 1 is burstier (clumps and gaps), k > 1 is more regular. `burstiness` is k,
as in vLLM's benchmark, so figures compare directly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

Process = Literal["poisson", "gamma", "constant"]


def interarrivals(
    rate: float, process: Process = "poisson", *, burstiness: float = 1.0, seed: int = 0
) -> Iterator[float]:
    """An endless stream of gaps (seconds) between consecutive sends at `rate` requests per second."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    rng = random.Random(seed)
    if process == "constant":
        gap = 1.0 / rate
        while True:
            yield gap
    elif process == "poisson":
        while True:
            yield rng.expovariate(rate)
    elif process == "gamma":
        if burstiness <= 0:
            raise ValueError(f"burstiness must be > 0, got {burstiness}")
        scale = 1.0 / (rate * burstiness)
        while True:
            yield rng.gammavariate(burstiness, scale)
    else:
        raise ValueError(f"unknown arrival process {process!r}")


def schedule(
    rate: float,
    *,
    duration: float | None = None,
    count: int | None = None,
    warmup: float = 0.0,
    process: Process = "poisson",
    burstiness: float = 1.0,
    seed: int = 0,
) -> list[float]:
    """Send offsets (seconds from t=0) for one open-loop run.

    Offsets below `warmup` are the warm-up; after it the run lasts `duration` seconds or `count` requests,
    whichever ends first. The first request goes at t=0 so a short run does not start with an idle gap.
    """
    if duration is None and count is None:
        raise ValueError("give a duration, a count, or both")
    out: list[float] = []
    measured = 0
    t = 0.0
    gaps = interarrivals(rate, process, burstiness=burstiness, seed=seed)
    while True:
        if t >= warmup:
            if (count is not None and measured >= count) or (duration is not None and t >= warmup + duration):
                return out
            measured += 1
        out.append(t)
        t += next(gaps)
