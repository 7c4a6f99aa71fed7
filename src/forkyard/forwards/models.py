"""Port forwards: a port of an instance reachable by preview URL (http) or tunnel (tcp)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin


class PortForward(IdMixin, Base):
    __tablename__ = "port_forwards"
    id_prefix = "pf"

    org_id: Mapped[str] = mapped_column(String(40), index=True)
    # Deleted with the instance's row: a forward never outlives its instance.
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(10))  # http | tcp
    visibility: Mapped[str] = mapped_column(String(10))  # private | public
    name: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (UniqueConstraint("instance_id", "port"),)
