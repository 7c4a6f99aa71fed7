"""Per-channel plumbing inside the agent: credit for output, a queue for incoming data."""

from __future__ import annotations

import collections
import threading

from . import protocol as p


class ChannelClosed(Exception):
    """The connection or the channel went away while a handler was using it."""


class Credit:
    """How many data bytes this side may still send on a channel before the peer grants more."""

    def __init__(self, initial: int = p.INITIAL_WINDOW) -> None:
        self._available = initial
        self._closed = False
        self._cond = threading.Condition()

    def grant(self, n: int) -> None:
        with self._cond:
            self._available += n
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, wanted: int, timeout: float | None = None) -> int:
        """Wait for credit; return how much of `wanted` may be sent now (0 on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._available > 0 or self._closed, timeout):
                return 0
            if self._closed:
                raise ChannelClosed()
            n = min(wanted, self._available)
            self._available -= n
            return n


class Inbox:
    """Data frames the peer sent on a channel (STDIN), consumed by the handler's thread.

    Unbounded in code, bounded in practice: the peer never has more than INITIAL_WINDOW bytes
    outstanding, and the handler grants credit back only once it has consumed a chunk.
    """

    def __init__(self) -> None:
        self._items: collections.deque[bytes | None] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, data: bytes | None) -> None:
        with self._cond:
            self._items.append(data)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> bytes | None:
        """Next chunk; b"" at EOF (or when the channel closed); None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._items:
                item = self._items.popleft()
                return b"" if item is None else item
            return b""
