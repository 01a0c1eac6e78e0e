"""Rate limits (token buckets) and in-flight limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`rate` units per second, at most `capacity` saved up. `take` either takes all or nothing."""

    rate: float
    capacity: float
    level: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.level < 0:
            self.level = self.capacity

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float = 1.0, now: float | None = None) -> float:
        """0.0 if taken; else the seconds until `amount` would be available (inf if it never fits)."""
        self._refill(time.monotonic() if now is None else now)
        if amount > self.capacity:
            return math.inf
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    async def atake(self, amount: float = 1.0) -> float:
        """`take`, with the signature of router.state.limits.SharedBucket (replicas sharing a Redis)."""
        return self.take(amount)

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)

    def remaining(self) -> int:
        self._refill(time.monotonic())
        return int(self.level)

    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.level) / self.rate if self.rate > 0 else 0.0


class InFlight:
    """A counter with a bound; `enter` refuses at the bound instead of queueing."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        if self.limit is not None and self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1
