"""The one clock. Tests and simulations move it; everything time-dependent reads it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen: tuple[datetime, float] | None = None

    def now(self) -> datetime:
        base = self._frozen[0] if self._frozen else datetime.now(UTC)
        return base + self._offset

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (rate limits, throttles) that moves with `advance`."""
        base = self._frozen[1] if self._frozen else time.monotonic()
        return base + self._offset.total_seconds()

    def freeze(self) -> None:
        """Stop time where it is: it then moves only with `advance` (tests whose outcome must
        not depend on how long the machine takes, fake-clock simulations)."""
        self._frozen = (datetime.now(UTC), time.monotonic())

    def advance(self, delta: timedelta) -> None:
        """Move time forward for everything that reads this clock (tests, fake-clock simulations)."""
        self._offset += delta

    def reset(self) -> None:
        self._offset = timedelta(0)
        self._frozen = None


clock = Clock()


def utcnow() -> datetime:
    return clock.now()


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
