"""Cursor lists: `{"data": [...], "next_cursor": ...}`, newest first, keyed on (created_at, id)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.kit.errors import BadRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: str | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page (max 200).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor from the previous page.")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def _encode_cursor(created_at: datetime, ident: str) -> str:
    raw = json.dumps([created_at.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        return datetime.fromisoformat(created), str(ident)
    except Exception as exc:
        raise BadRequest("The cursor is not valid.", details={"cursor": cursor}) from exc


async def paginate(
    session: AsyncSession, stmt: Select[Any], model: Any, params: PageParams
) -> tuple[list[Any], str | None]:
    """Run `stmt` (already filtered) newest first, one page at a time."""
    if params.cursor:
        created, ident = _decode_cursor(params.cursor)
        stmt = stmt.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < ident))
        )
    stmt = stmt.order_by(model.created_at.desc(), model.id.desc()).limit(params.limit + 1)
    rows = list((await session.execute(stmt)).scalars().all())
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor
