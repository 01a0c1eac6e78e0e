"""Statistics over request records.

Definitions (all times in seconds; "start" is the *scheduled* send time, so time a request waited inside an
overloaded client counts against the server under test, as a real user would see it):

- TTFT   first content byte − start.
- ITL    gaps between consecutive content chunks of one request, pooled over all requests (one chunk is
         taken as one token event; servers that pack several tokens per chunk show longer, fewer gaps).
- TPOT   per request, (end − first content byte) / (completion_tokens − 1); requests with < 2 output tokens
         have none. completion_tokens comes from the server's usage block, else the number of content chunks.
- E2E    end − start.
- goodput  successful requests per second that met every SLO given (a missing SLO is not checked).
Percentiles interpolate linearly between closest ranks (numpy's default, Hyndman–Fan type 7).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request; times are seconds on the run's monotonic clock."""

    index: int
    item_id: str
    scheduled: float
    sent: float = 0.0
    first_token: float | None = None
    end: float = 0.0
    chunk_times: list[float] = field(default_factory=list)
    status: int = 0
    error: str | None = None  # kind: http_429, timeout, connection, stream_error, …
    error_detail: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = False
    output_chars: int = 0
    task: str | None = None
    expected_tier: str | None = None
    tier: str | None = None
    cache: str | None = None
    escalated: bool = False
    model: str | None = None
    cost_header: float | None = None
    warmup: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def e2e(self) -> float:
        return self.end - self.scheduled

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.scheduled

    @property
    def send_lag(self) -> float:
        return self.sent - self.scheduled

    @property
    def tpot(self) -> float | None:
        if self.first_token is None or self.completion_tokens < 2:
            return None
        return (self.end - self.first_token) / (self.completion_tokens - 1)

    def itls(self) -> list[float]:
        t = self.chunk_times
        return [t[i] - t[i - 1] for i in range(1, len(t))]

    def to_json(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        d["e2e"] = self.e2e
        d["ttft"] = self.ttft
        d["tpot"] = self.tpot
        return d


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The q-th percentile (0–100) with linear interpolation; NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return math.nan
    xs = values if presorted else sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Dist:
    """Summary of one latency distribution (seconds)."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Dist:
        xs = sorted(values)
        if not xs:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan)
        return cls(
            n=len(xs),
            mean=math.fsum(xs) / len(xs),
            p50=percentile(xs, 50, presorted=True),
            p90=percentile(xs, 90, presorted=True),
            p99=percentile(xs, 99, presorted=True),
            min=xs[0],
            max=xs[-1],
        )

    def to_json(self) -> dict[str, float | int | None]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in _fields(self).items()}


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


@dataclass(frozen=True, slots=True)
class SLO:
    """Service-level objectives in seconds; None means not checked."""

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def met(self, r: RequestRecord) -> bool:
        if not r.ok:
            return False
        if self.ttft is not None and (r.ttft is None or r.ttft > self.ttft):
            return False
        if self.tpot is not None:
            tpot = r.tpot
            # A one-token answer has no per-token time to violate.
            if tpot is not None and tpot > self.tpot:
                return False
        return self.e2e is None or r.e2e <= self.e2e

    @property
    def empty(self) -> bool:
        return self.ttft is None and self.tpot is None and self.e2e is None


def window(records: Sequence[RequestRecord]) -> float:
    """Measurement window: first scheduled send to last completion of the measured requests."""
    if not records:
        return 0.0
    return max(r.end for r in records) - min(r.scheduled for r in records)


def goodput(records: Sequence[RequestRecord], slo: SLO) -> tuple[float, float]:
    """(requests/s meeting the SLO, fraction of requests meeting it)."""
    if not records:
        return 0.0, math.nan
    good = sum(1 for r in records if slo.met(r))
    w = window(records)
    return (good / w if w > 0 else math.nan), good / len(records)


@dataclass(slots=True)
class Summary:
    """The headline numbers of one load point."""

    requests: int
    ok: int
    errors: dict[str, int]
    duration_s: float
    request_throughput: float
    output_token_throughput: float
    total_token_throughput: float
    e2e: Dist
    ttft: Dist
    itl: Dist
    tpot: Dist
    send_lag: Dist
    goodput_rps: float | None
    goodput_fraction: float | None
    tier_mix: dict[str, int]
    cache_mix: dict[str, int]
    cache_hit_rate: float | None
    escalations: int
    tier_accuracy: float | None  # share of labelled requests that reached the expected tier
    usage_estimated: int  # requests whose token counts were estimated, not reported

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in _fields(self).items():
            if isinstance(value, Dist):
                value = value.to_json()
            elif isinstance(value, float) and math.isnan(value):
                value = None
            out[name] = value
        return out


CACHE_HITS = ("hit-exact", "hit-semantic")


def summarise(records: Sequence[RequestRecord], slo: SLO | None = None) -> Summary:
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    w = window(measured)
    out_tokens = sum(r.completion_tokens for r in ok)
    all_tokens = out_tokens + sum(r.prompt_tokens for r in ok)
    itls: list[float] = []
    for r in ok:
        itls.extend(r.itls())
    gp_rps: float | None = None
    gp_frac: float | None = None
    if slo is not None and not slo.empty:
        gp_rps, gp_frac = goodput(measured, slo)
    cache = Counter(r.cache for r in measured if r.cache)
    cache_seen = sum(v for k, v in cache.items() if k != "bypass")
    labelled = [r for r in ok if r.expected_tier and r.tier]
    return Summary(
        requests=len(measured),
        ok=len(ok),
        errors=dict(Counter(r.error for r in measured if r.error)),
        duration_s=w,
        request_throughput=len(ok) / w if w > 0 else 0.0,
        output_token_throughput=out_tokens / w if w > 0 else 0.0,
        total_token_throughput=all_tokens / w if w > 0 else 0.0,
        e2e=Dist.of(r.e2e for r in ok),
        ttft=Dist.of(t for r in ok if (t := r.ttft) is not None),
        itl=Dist.of(itls),
        tpot=Dist.of(t for r in ok if (t := r.tpot) is not None),
        send_lag=Dist.of(r.send_lag for r in measured),
        goodput_rps=gp_rps,
        goodput_fraction=gp_frac,
        tier_mix=dict(Counter(r.tier for r in ok if r.tier)),
        cache_mix=dict(cache),
        cache_hit_rate=(sum(cache[k] for k in CACHE_HITS) / cache_seen) if cache_seen else None,
        escalations=sum(1 for r in ok if r.escalated),
        tier_accuracy=(sum(1 for r in labelled if r.tier == r.expected_tier) / len(labelled)) if labelled else None,
        usage_estimated=sum(1 for r in ok if not r.usage_reported),
    )


def cdf(values: Iterable[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF points (x sorted, y in (0, 1])."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
