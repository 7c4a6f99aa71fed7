"""The request session: one transaction, committed at the edge; an error rolls the request's
changes back unless it says they must be kept (ForkyardError.keep_changes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from forkyard.db.engine import Database
from forkyard.db.session import request_session
from forkyard.kit.errors import Conflict, ForkyardError, NotFound
from forkyard.tenants.models import Org


def _request(db: Database) -> Any:
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(db=db)))


async def _fail_after_adding(db: Database, name: str, error: Exception) -> None:
    requests = request_session(_request(db))
    session = await anext(requests)
    session.add(Org(name=name))
    await session.flush()
    with pytest.raises(type(error)):
        await requests.athrow(error)


async def _names(db: Database) -> set[str]:
    async with db.transaction() as session:
        return set((await session.execute(select(Org.name))).scalars())


async def test_an_error_rolls_the_request_back(db: Database) -> None:
    await _fail_after_adding(db, "rolled-back", Conflict())
    await _fail_after_adding(db, "crashed", RuntimeError("boom"))
    assert {"rolled-back", "crashed"}.isdisjoint(await _names(db))


async def test_an_error_that_keeps_changes_is_committed_before_it_is_rendered(
    db: Database,
) -> None:
    await _fail_after_adding(db, "counted", NotFound(keep_changes=True))
    kept = Conflict()
    kept.keep_changes = True  # as an except clause marks an error raised further down
    await _fail_after_adding(db, "revoked", kept)
    assert {"counted", "revoked"} <= await _names(db)
    assert ForkyardError.keep_changes is False  # marking one error marks no other


async def test_a_request_that_succeeds_is_committed(db: Database) -> None:
    requests = request_session(_request(db))
    session = await anext(requests)
    session.add(Org(name="made"))
    with pytest.raises(StopAsyncIteration):
        await anext(requests)
    assert "made" in await _names(db)
