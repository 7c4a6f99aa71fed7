"""The request's database session: one transaction, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.db.engine import Database
from forkyard.kit.errors import ForkyardError


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.sessions() as session:
        try:
            yield session
            await session.commit()
        except ForkyardError as exc:
            # The one way a failing request keeps its changes (kit.errors.ForkyardError).
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit happens before the response leaves, so a client that gets 201
# can immediately read what it created, and a failed commit becomes an error response.
DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.read_sessions() as session:
        yield session
        if session.new or session.dirty or session.deleted:
            # A route that writes must take DbSession: here nothing would be committed.
            raise RuntimeError("a ReadSession route changed rows")


# For routes that only read, on the hot paths (GET an instance, list them): each statement
# commits by itself, so there are no BEGIN and COMMIT round trips (ADR 0008); statements see the
# latest committed rows rather than one snapshot.
ReadSession = Annotated[AsyncSession, Depends(read_session)]
