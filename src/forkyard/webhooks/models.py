"""Webhook endpoints, one delivery per (event, endpoint), and each HTTP attempt of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin


class WebhookEndpoint(IdMixin, Base):
    """Where an org wants its events sent. The signing secrets are encrypted at rest
    (kit.crypto, purpose "webhook-secret"); the previous one signs too until it expires."""

    __tablename__ = "webhook_endpoints"
    id_prefix = "whk"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSONB, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    # Set at the first failed attempt after a success; the endpoint is disabled when it is older
    # than webhooks_disable_after_s.
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime | None]


class WebhookDelivery(IdMixin, Base):
    """One event for one endpoint: its id is the webhook-id of every attempt. `status`:
    pending (an attempt is due at next_attempt_at), delivered, dead (the schedule ran out: the
    dead-letter queue), cancelled (the endpoint was disabled or deleted)."""

    __tablename__ = "webhook_deliveries"
    id_prefix = "msg"

    org_id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(80))
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)  # {type, timestamp, data}, sent as is
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]  # delivered, dead or cancelled

    __table_args__ = (
        # Exactly one delivery per matching endpoint per event, whatever runs twice.
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )


class WebhookAttempt(IdMixin, Base):
    """One HTTP request of a delivery, as the endpoint answered it."""

    __tablename__ = "webhook_attempts"
    id_prefix = "wha"

    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    next_attempt_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_attempts_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_webhook_attempts_delivery", "delivery_id"),
    )
