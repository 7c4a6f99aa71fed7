"""Caches the database keeps honest: entries dropped when the rows behind them change.

A few lookups run on every hot-path request (the API key behind a request, the server behind
an instance) and change rarely. Database triggers (db/migrations/repeatable/) announce changes
to the rows behind them with NOTIFY on a channel per cache, all through one function
(`forkyard_announce_change(channel [, key column])`, 00_announce_change.sql); the announcement is
delivered when the changing transaction commits, whatever code path (or process, or operator)
made the change. tests/db/test_change_triggers.py pins what each change announces.
Each process holds one LISTEN connection (`ChangeFeed.run`, started by app.py) and a cache keeps
entries only while it is connected, so:

- a lost or reopened connection empties every cache, which answers nothing until it is back;
- an announcement naming a key drops that key; an empty one drops everything;
- an entry lives at most `ttl_s`, in case a change ever reaches the tables without a trigger;
- a lookup that raced an announcement is not stored (`generation`).

A change made through a SQLAlchemy session in this process also drops the entries at once,
when it is flushed and again when it commits (the session events below), so the process's own
next request never sees the old value while the announcement is on its way back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, TypeVar

import psycopg
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from forkyard.db.engine import libpq_url

log = logging.getLogger("forkyard.db.changes")

RECONNECT_S = 1.0
V = TypeVar("V")


class ListenedCache(Generic[V]):
    """`tables`: a change to any of their rows drops every entry. `keyed_by`: a change to one of
    its rows drops the entry whose key is that row's id."""

    def __init__(
        self,
        channel: str,
        *,
        ttl_s: float,
        tables: tuple[str, ...] = (),
        keyed_by: str | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self.channel = channel
        self.tables = tables
        self.keyed_by = keyed_by
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.listening = False
        # Bumped by every forget: a lookup that began before one must not be stored.
        self.generation = 0
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        if not self.listening:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if time.monotonic() - stored_at > self.ttl_s:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, value: V, generation: int) -> None:
        """Store what a lookup that began at `generation` found."""
        if not self.listening or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)

    def forget(self, key: str = "") -> None:
        """Drop one key, or (with no key) everything."""
        self.generation += 1
        if key:
            self._entries.pop(key, None)
        else:
            self._entries.clear()


class ChangeFeed:
    """One LISTEN connection per process, feeding every registered cache."""

    def __init__(self) -> None:
        self.caches: dict[str, ListenedCache[object]] = {}

    def register(self, cache: ListenedCache[V]) -> ListenedCache[V]:
        self.caches[cache.channel] = cache  # type: ignore[assignment]
        return cache

    def drop(self, table: str, row_id: str | None) -> None:
        """What a change to this row makes stale, in every cache."""
        for cache in self.caches.values():
            if table in cache.tables:
                cache.forget()
            elif table == cache.keyed_by:
                cache.forget(row_id or "")

    def _set_listening(self, listening: bool) -> None:
        for cache in self.caches.values():
            cache.forget()
            cache.listening = listening

    async def run(self, database_url: str) -> None:
        """Listen until cancelled, reconnecting after a loss."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_url(database_url), autocommit=True
                ) as conn:
                    for channel in self.caches:
                        await conn.execute(f"LISTEN {channel}")
                    # Anything cached before this point was cached without a listener.
                    self._set_listening(True)
                    async for notice in conn.notifies():
                        cache = self.caches.get(notice.channel)
                        if cache is not None:
                            cache.forget(notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("change feed lost (%s); caches are off until it is back", exc)
            finally:
                self._set_listening(False)
            await asyncio.sleep(RECONNECT_S)


changes = ChangeFeed()


# --- changes made in this process ---

CHANGED = "forkyard_changed_rows"


def _note(session: Session, table: str, row_id: str | None) -> None:
    changes.drop(table, row_id)
    session.info.setdefault(CHANGED, set()).add((table, row_id))


@event.listens_for(Session, "after_flush")
def _dropped_by_flush(session: Session, flush_context: object) -> None:
    # Still the flush's own lists here: what it inserted, changed and deleted.
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table is not None:
            _note(session, table, getattr(obj, "id", None))


@event.listens_for(Session, "do_orm_execute")
def _dropped_by_statement(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if table is not None:
            _note(state.session, table.name, None)


@event.listens_for(Session, "after_commit")
def _dropped_by_sessions(session: Session) -> None:
    # Again once committed: a lookup between the flush and the commit read the old rows.
    for table, row_id in session.info.pop(CHANGED, ()):
        changes.drop(table, row_id)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(CHANGED, None)
