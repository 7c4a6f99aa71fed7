"""Engine and session factory for one PostgreSQL database (async psycopg 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import ClauseElement


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and use the psycopg 3 driver."""
    for head in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(head):
            return "postgresql+psycopg://" + url[len(head) :]
    raise ValueError("FORKYARD_DATABASE_URL must be a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The same URL as plain libpq understands it (for psycopg connections outside SQLAlchemy)."""
    return "postgresql://" + async_url(url)[len("postgresql+psycopg://") :]


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
        )
        # Copied into every session's `info`: what work inside a transaction needs from the
        # process (the secret that seals job payloads: mail/sender.py), set by the app and the
        # worker before their first session.
        self.info: dict[str, Any] = {}
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, info=self.info)
        # Read-only work: no BEGIN and COMMIT round trips around it (db/session.py ReadSession).
        self.read_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
            autoflush=False,
            info=self.info,
        )
        self._pool_size = pool_size
        self._plain_pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._plain_pool_opening = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit when the block ends, roll back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def plain(self, statement: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run one statement on a plain psycopg connection in autocommit mode and return its
        first row (None when it returns none). For the few statements on the hottest paths (the API-key lookup, an exec's claim and record, a job's claim). There,
        SQLAlchemy's session, pool checkout (with its reset) and result processing cost about
        1 ms of CPU per statement, against 0.2 ms for the statement itself (ADR 0008).
        Statements come from `plain_sql()`; psycopg prepares the ones used repeatedly.

        Its sessions run with `synchronous_commit = off`: a commit does not wait for the WAL
        flush, so a database crash may lose the last fraction of a second of these writes
        (never corrupt them). Only writes that may be lost that way belong here: activity
        stamps, exec records, a key's last use, a job's claim (jobs are safe to run twice)."""
        pool = self._plain_pool or await self._open_plain_pool()
        async with pool.connection() as conn:
            cursor = await conn.execute(statement, params)
            return await cursor.fetchone() if cursor.description is not None else None

    async def _open_plain_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        async with self._plain_pool_opening:
            if self._plain_pool is None:
                pool = AsyncConnectionPool(
                    libpq_url(self.url),
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"autocommit": True, "options": "-c synchronous_commit=off"},
                    open=False,
                )
                await pool.open()
                self._plain_pool = pool
        return self._plain_pool

    async def dispose(self) -> None:
        if self._plain_pool is not None:
            await self._plain_pool.close()
            self._plain_pool = None
        await self.engine.dispose()


_DIALECT = PGDialect_psycopg()


def plain_sql(statement: ClauseElement) -> str:
    """A Core statement (with named `bindparam`s) as SQL text for `Database.plain()`, compiled
    once at import: table and column names still come from the models."""
    return str(statement.compile(dialect=_DIALECT))
