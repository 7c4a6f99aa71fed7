"""In-process token buckets. One API process per node keeps the counts; see docs/adr/0001."""

from __future__ import annotations

import math
from dataclasses import dataclass

from forkyard.kit.clock import clock
from forkyard.kit.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float
    capacity: float

    def level(self, now: float) -> float:
        """How full the bucket is now (1.0: refilled; it then remembers nothing)."""
        refill = max(0.0, now - self.updated) * self.capacity / 60.0
        return min(self.capacity, self.tokens + refill) / self.capacity


class RateLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def _make_room(self, now: float) -> None:
        """Memory stays bounded, but a flood of new keys (fresh API keys, addresses) must never
        buy anyone a reset: drop refilled buckets first (they hold no state), then the fullest
        ones. A bucket someone has drained is the last thing to go."""
        for key in [k for k, b in self._buckets.items() if b.level(now) >= 1.0]:
            del self._buckets[key]
        if len(self._buckets) < self._max_keys:
            return
        by_level = sorted(self._buckets.items(), key=lambda kv: kv[1].level(now), reverse=True)
        for key, _ in by_level[: max(1, self._max_keys // 10)]:
            del self._buckets[key]

    def hit(self, key: str, per_minute: int, cost: float = 1.0) -> None:
        """Take `cost` tokens from the bucket for `key`, or raise RateLimited with Retry-After."""
        now = clock.monotonic()
        rate = per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(
                tokens=float(per_minute), updated=now, capacity=float(per_minute)
            )
        bucket.capacity = float(per_minute)
        bucket.tokens = min(
            float(per_minute), bucket.tokens + max(0.0, now - bucket.updated) * rate
        )
        bucket.updated = now
        if bucket.tokens < cost:
            retry_after = max(1, math.ceil((cost - bucket.tokens) / rate))
            raise RateLimited(retry_after)
        bucket.tokens -= cost

    def reset(self) -> None:
        self._buckets.clear()


limiter = RateLimiter()
