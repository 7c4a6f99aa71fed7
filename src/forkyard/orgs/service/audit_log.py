"""Reading an org's audit log (the audit kernel, forkyard.audit, only records): the log is the
org's, read by its admins through the org's tenancy filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from forkyard.audit.models import AuditEvent
from forkyard.db.tenancy import owned
from forkyard.identity.principal import Principal
from forkyard.orgs import schemas


@dataclass
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix when it ends in "."
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_events(principal: Principal, f: AuditFilter) -> Select[AuditEvent]:
    """The acting org's events matching `f` (the caller pages them, newest first)."""
    stmt = owned(select(AuditEvent), principal)
    if f.actor:
        stmt = stmt.where(AuditEvent.actor_id == f.actor)
    if f.action:
        stmt = stmt.where(
            AuditEvent.action.startswith(f.action)
            if f.action.endswith(".")
            else AuditEvent.action == f.action
        )
    if f.target:
        stmt = stmt.where(AuditEvent.target_id == f.target)
    if f.since:
        stmt = stmt.where(AuditEvent.created_at >= f.since)
    if f.until:
        stmt = stmt.where(AuditEvent.created_at < f.until)
    return stmt


def audit_event_out(e: AuditEvent) -> schemas.AuditEventOut:
    return schemas.AuditEventOut(
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
