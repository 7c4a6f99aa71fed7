"""The declarative base every table inherits: a prefixed string id and creation time."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Self

from sqlalchemy import ColumnElement, DateTime, MetaData, String, and_, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import ReturningUpdate

from forkyard.kit.clock import utcnow
from forkyard.kit.ids import new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=True)}


class IdMixin:
    """A prefixed id assigned at construction, so it is known before the INSERT is flushed."""

    id_prefix: ClassVar[str]

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("id", new_id(self.id_prefix))
        kwargs.setdefault("created_at", utcnow())
        super().__init__(**kwargs)


class SingleUseMixin:
    """A secret handed out once (an emailed token, a code, a sign-in challenge, an OAuth state):
    it expires, and `used_at` is stamped when it is spent. The secret itself is stored as a hash
    in a column each table names for what it holds."""

    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()

    @classmethod
    def live(cls, now: datetime) -> ColumnElement[bool]:
        """Not spent and not expired at `now`, as SQL."""
        return and_(cls.used_at.is_(None), cls.expires_at > now)

    def is_live(self, now: datetime) -> bool:
        return self.used_at is None and self.expires_at > now

    @classmethod
    def spend(cls, *where: ColumnElement[bool]) -> ReturningUpdate[Self]:
        """Stamp the live row matching `where` as used and return it, in one statement: two
        racing requests cannot both spend it."""
        now = utcnow()
        return update(cls).where(*where, cls.live(now)).values(used_at=now).returning(cls)
