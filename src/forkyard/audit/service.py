"""Recording audit events. Called inside the request's transaction so the event and the change
it describes commit together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.identity.models import AuditEvent
from forkyard.identity.principal import Principal


async def record(
    session: AsyncSession,
    action: str,
    *,
    principal: Principal | None = None,
    org_id: str | None = None,
    actor_id: str | None = None,
    actor_type: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        org_id=org_id if org_id is not None else (principal.org_id if principal else None),
        actor_id=actor_id if actor_id is not None else (principal.actor_id if principal else None),
        actor_type=actor_type or (principal.kind if principal else "anonymous"),
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip if ip is not None else (principal.ip if principal else None),
        user_agent=user_agent
        if user_agent is not None
        else (principal.user_agent if principal else None),
        data=data or {},
    )
    session.add(event)
    return event
