"""Notices for users and each user's per-category channel settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin


class Notification(IdMixin, Base):
    """One notice for one user, made from one event (at most once per user and event)."""

    __tablename__ = "notifications"
    id_prefix = "ntf"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    org_id: Mapped[str | None] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(80))  # the event type it was made from
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    event_id: Mapped[str] = mapped_column(String(40))
    # Shown in the app (the user's in_app setting when it was made). The row is kept either
    # way: it is what makes a second run of its subscriber send no second email.
    in_app: Mapped[bool] = mapped_column(Boolean, default=True)
    emailed: Mapped[bool] = mapped_column(Boolean, default=False)
    read_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("user_id", "event_id"),
        Index("ix_notifications_user_created", "user_id", "created_at"),
    )


class NotificationSetting(Base):
    """A user's choice for one category and channel; absent: the category's default."""

    __tablename__ = "notification_settings"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)  # in_app, email
    enabled: Mapped[bool] = mapped_column(Boolean)
