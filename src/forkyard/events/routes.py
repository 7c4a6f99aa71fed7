"""The Events API: an org's facts, newest first (tag events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy import select

from forkyard.db.session import DbSession
from forkyard.events.models import EventRecord
from forkyard.events.schemas import EventOut
from forkyard.identity.deps import Reader
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.kit.routing import protected_router

router = protected_router("events", prefix="/v1/events")


@router.get("", response_model=Page[EventOut])
async def list_events(
    session: DbSession,
    principal: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    type: Annotated[
        str | None, Query(description="Exact type, or a prefix ending in `.` (`instance.`).")
    ] = None,
    resource_type: Annotated[str | None, Query(description="instance, checkpoint, ...")] = None,
    resource_id: Annotated[str | None, Query(description="One resource's history.")] = None,
) -> Page[EventOut]:
    """The caller's org's events, newest first."""
    stmt = select(EventRecord).where(EventRecord.org_id == principal.org_id)
    if type:
        stmt = stmt.where(
            EventRecord.type.startswith(type, autoescape=True)
            if type.endswith(".")
            else EventRecord.type == type
        )
    if resource_type:
        stmt = stmt.where(EventRecord.resource_type == resource_type)
    if resource_id:
        stmt = stmt.where(EventRecord.resource_id == resource_id)
    rows, cursor = await paginate(session, stmt, EventRecord, page)
    return Page(data=[EventOut.of(r) for r in rows], next_cursor=cursor)


@router.get("/{id}", response_model=EventOut)
async def get_event(id: str, session: DbSession, principal: Reader) -> EventOut:
    """One event of the caller's org."""
    row = await session.get(EventRecord, id) if has_prefix(id, "evt") else None
    if row is None or row.org_id is None or row.org_id != principal.org_id:
        raise NotFound.of("Event", id)
    return EventOut.of(row)
