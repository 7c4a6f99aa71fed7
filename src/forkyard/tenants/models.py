"""The tables of tenancy: orgs, their members and their IP allowlists (the database schema is
unchanged by their move here from orgs; tests/test_migrations.py compares)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin


class Org(IdMixin, Base):
    __tablename__ = "orgs"
    id_prefix = "org"

    name: Mapped[str] = mapped_column(String(200))
    is_personal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(40))
    deleted_at: Mapped[datetime | None]


class Membership(IdMixin, Base):
    __tablename__ = "memberships"
    id_prefix = "mem"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))

    __table_args__ = (UniqueConstraint("org_id", "user_id"),)


class IpAllowlistEntry(IdMixin, Base):
    __tablename__ = "ip_allowlist_entries"
    id_prefix = "ipa"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    cidr: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (UniqueConstraint("org_id", "cidr"),)
