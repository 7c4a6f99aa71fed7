"""The declarative base every table inherits: a prefixed string id and creation time."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import DateTime, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
