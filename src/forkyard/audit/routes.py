"""The org's audit log, filterable (tag audit)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from forkyard.db.session import DbSession
from forkyard.db.tenancy import owned
from forkyard.identity.deps import OrgAdmin
from forkyard.identity.models import AuditEvent
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.kit.routing import protected_router

router = protected_router("audit", prefix="/v1/audit")


class AuditEventOut(BaseModel):
    id: str
    created_at: datetime
    action: str
    actor_id: str | None
    actor_type: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    data: dict[str, Any]


@router.get("", response_model=Page[AuditEventOut])
async def list_audit_events(
    session: DbSession,
    principal: OrgAdmin,
    page: Annotated[PageParams, Depends(page_params)],
    actor: Annotated[str | None, Query(description="Actor id (user or API key).")] = None,
    action: Annotated[
        str | None, Query(description="Exact action, or a prefix ending in `.`")
    ] = None,
    target: Annotated[str | None, Query(description="Target id.")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEventOut]:
    """Security events for the caller's org, newest first (org admins)."""
    stmt = owned(select(AuditEvent), principal)
    if actor:
        stmt = stmt.where(AuditEvent.actor_id == actor)
    if action:
        stmt = stmt.where(
            AuditEvent.action.startswith(action)
            if action.endswith(".")
            else AuditEvent.action == action
        )
    if target:
        stmt = stmt.where(AuditEvent.target_id == target)
    if since:
        stmt = stmt.where(AuditEvent.created_at >= since)
    if until:
        stmt = stmt.where(AuditEvent.created_at < until)
    rows, cursor = await paginate(session, stmt, AuditEvent, page)
    return Page(
        data=[
            AuditEventOut(
                id=e.id,
                created_at=e.created_at,
                action=e.action,
                actor_id=e.actor_id,
                actor_type=e.actor_type,
                target_type=e.target_type,
                target_id=e.target_id,
                ip=e.ip,
                user_agent=e.user_agent,
                data=e.data,
            )
            for e in rows
        ],
        next_cursor=cursor,
    )
