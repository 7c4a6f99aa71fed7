"""The audit log's table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin


class AuditEvent(IdMixin, Base):
    """Append-only record of security-relevant events (no UPDATE or DELETE path exists)."""

    __tablename__ = "audit_events"
    id_prefix = "aud"

    org_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor_type: Mapped[str] = mapped_column(String(20))  # user, api_key, system, anonymous
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(40), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (Index("ix_audit_org_created", "org_id", "created_at"),)
