"""Wake-ups for live streams: rows announced with NOTIFY, relayed to the waiting connections.

A trigger (db/migrations/repeatable/stream_announcements.sql) announces each new row on a
channel with its key as the payload (an org id for `forkyard_events`, a user id for
`forkyard_notifications`); the announcement is delivered when the inserting transaction
commits. Each process holds one LISTEN connection per database while at least one stream is
open (opened by the first, closed with the last). A stream registers its key and gets an
`asyncio.Event`: an announcement sets it, the stream reads what is new from the table itself.

So the per-connection buffer is one flag, whatever the rate of announcements: a slow client
never makes the process hold rows for it, it reads them from the table when it catches up. The
announcement carries no data (nothing to trust, nothing lost if it is dropped): while the
connection is down, streams fall back to polling (`Listener.connected` is false).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg

from forkyard.db.engine import libpq_url

log = logging.getLogger("forkyard.db.announcements")

RECONNECT_S = 1.0
CHANNELS = ("forkyard_events", "forkyard_notifications")


class Listener:
    """One LISTEN connection to one database, shared by every open stream of this process."""

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self.waiting: dict[tuple[str, str], set[asyncio.Event]] = {}
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(
        self, channel: str, key: str, *, connect_timeout_s: float = 2.0
    ) -> AsyncIterator[asyncio.Event]:
        """An event set whenever a row for `key` is announced on `channel` (and set once at the
        start, so the first read happens at once). Waits briefly for the connection, so what
        commits after the stream's first read is announced to it."""
        wake = asyncio.Event()
        wake.set()
        self.waiting.setdefault((channel, key), set()).add(wake)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), connect_timeout_s)
        try:
            yield wake
        finally:
            waiters = self.waiting.get((channel, key))
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self.waiting[(channel, key)]
            if not self.waiting and self._task is not None:
                self._task.cancel()
                self._task = None
                self.connected.clear()

    def _wake(self, channel: str, key: str) -> None:
        for wake in self.waiting.get((channel, key), ()):
            wake.set()

    def _wake_all(self) -> None:
        for waiters in self.waiting.values():
            for wake in waiters:
                wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    self.connected.set()
                    # Rows committed while the connection was down: every stream reads again.
                    self._wake_all()
                    async for notice in conn.notifies():
                        self._wake(notice.channel, notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("stream announcements lost (%s); streams poll until it is back", exc)
            finally:
                self.connected.clear()
            await asyncio.sleep(RECONNECT_S)


# One listener per database this process talks to (tests run many apps in one process).
_listeners: dict[str, Listener] = {}


def listener(database_url: str) -> Listener:
    found = _listeners.get(database_url)
    if found is None:
        found = _listeners[database_url] = Listener(database_url)
    return found
