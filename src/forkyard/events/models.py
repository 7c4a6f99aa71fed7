"""The events table (every fact, written in the transaction that caused it) and the record of
which subscriber has handled which event (what makes a subscriber's second run a no-op)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin
from forkyard.kit.clock import utcnow


class EventRecord(IdMixin, Base):
    """One domain fact: append-only, never updated."""

    __tablename__ = "events"
    id_prefix = "evt"

    org_id: Mapped[str | None] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(80))
    version: Mapped[int] = mapped_column(Integer)
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(40))
    actor_type: Mapped[str] = mapped_column(String(20))  # user, api_key, node, system, anonymous
    actor_id: Mapped[str | None] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        # An org's events in order (the events API and its stream, issue 14), and one
        # resource's history.
        Index("ix_events_org_created", "org_id", "created_at"),
        Index("ix_events_resource", "resource_type", "resource_id", "created_at"),
    )


class SubscriberRun(Base):
    """`subscriber` has handled `event_id`: inserted in the same transaction as the
    subscriber's own changes, so a job that runs again finds it and does nothing."""

    __tablename__ = "event_subscriber_runs"

    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscriber: Mapped[str] = mapped_column(String(200), primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)
