"""Domain events: typed facts recorded in the transaction that caused them, and subscribers that
react to them as jobs. Each domain declares its events and subscribers in its own events.py."""

from forkyard.events.kernel import (
    CATALOGUE,
    SUBSCRIBERS,
    SYSTEM,
    Actor,
    Audience,
    Event,
    audience,
    emit,
    subscriber,
)

__all__ = [
    "CATALOGUE",
    "SUBSCRIBERS",
    "SYSTEM",
    "Actor",
    "Audience",
    "Event",
    "audience",
    "emit",
    "subscriber",
]
