"""The one clock. Tests and simulations move it; everything time-dependent reads it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (rate limits, throttles) that moves with `advance`."""
        return time.monotonic() + self._offset.total_seconds()

    def advance(self, delta: timedelta) -> None:
        """Move time forward for everything that reads this clock (tests, fake-clock simulations)."""
        self._offset += delta

    def reset(self) -> None:
        self._offset = timedelta(0)


clock = Clock()


def utcnow() -> datetime:
    return clock.now()


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
