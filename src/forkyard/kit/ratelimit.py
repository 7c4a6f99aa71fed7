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


class RateLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def hit(self, key: str, per_minute: int, cost: float = 1.0) -> None:
        """Take `cost` tokens from the bucket for `key`, or raise RateLimited with Retry-After."""
        now = clock.monotonic()
        rate = per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # bounded memory beats perfect accounting under a flood
            bucket = self._buckets[key] = _Bucket(tokens=float(per_minute), updated=now)
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
