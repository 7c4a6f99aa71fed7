"""The Events API: an org's facts, newest first (tag events).

The events kernel (forkyard.events) sits below identity, so its public routes live here, with
the org's other records (its audit log is orgs/routes.py); the URLs and operation ids are the
events API's own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select

from forkyard.db.session import DbSession, database
from forkyard.db.tenancy import get_owned, owned
from forkyard.events.models import EventRecord
from forkyard.events.schemas import EventOut
from forkyard.events.stream import SSE_RESPONSES, Row, follow, start_after, stream_response
from forkyard.identity.deps import Reader, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

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
    stmt = _filtered(
        owned(select(EventRecord), principal),
        type,
        resource_type,
        resource_id,
    )
    rows, cursor = await paginate(session, stmt, EventRecord, page)
    return Page(data=[EventOut.of(r) for r in rows], next_cursor=cursor)


def _filtered(
    stmt: Select[Any],
    type: str | None,
    resource_type: str | None,
    resource_id: str | None,
) -> Select[Any]:
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
    return stmt


@router.get("/stream", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def stream_events(
    request: Request,
    principal: Reader,
    type: Annotated[
        str | None, Query(description="Exact type, or a prefix ending in `.` (`instance.`).")
    ] = None,
    resource_type: Annotated[str | None, Query(description="instance, checkpoint, ...")] = None,
    resource_id: Annotated[str | None, Query(description="One resource's history.")] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this event.")] = None,
) -> StreamingResponse:
    """SSE stream of the caller's org's events as they commit (event: the type, data: the event)."""
    org_id = principal.org_id
    assert org_id is not None
    db = database(request)

    async def read(after: str, limit: int) -> list[Row]:
        stmt = _filtered(
            owned(select(EventRecord).where(EventRecord.id > after), org_id),
            type,
            resource_type,
            resource_id,
        )
        async with db.read_sessions() as session:
            rows = (await session.execute(stmt.order_by(EventRecord.id).limit(limit))).scalars()
            return [Row(r.id, r.type, EventOut.of(r).model_dump(mode="json")) for r in rows]

    return stream_response(
        follow(
            db.url,
            channel="forkyard_events",
            key=org_id,
            prefix="evt",
            after=start_after("evt", last_event_id),
            read=read,
            keepalive_s=settings_of(request).events_stream_keepalive_s,
        )
    )


@router.get("/{id}", response_model=EventOut)
async def get_event(id: str, session: DbSession, principal: Reader) -> EventOut:
    """One event of the caller's org."""
    return EventOut.of(await get_owned(session, EventRecord, id, principal, kind="Event"))
