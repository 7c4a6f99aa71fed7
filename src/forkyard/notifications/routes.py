"""A user's notices and their channel settings (tag notifications)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from forkyard.db.session import DbSession, database
from forkyard.events.stream import SSE_RESPONSES, Row, follow, start_after, stream_response
from forkyard.identity.deps import UserPrincipal, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import NotFound, ValidationFailed
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.notifications.models import Notification, NotificationSetting
from forkyard.notifications.service import CATEGORIES, CHANNELS, channels_of

router = protected_router("notifications", prefix="/v1/notifications")


class NotificationOut(BaseModel):
    id: str
    category: str
    kind: str = Field(description="The event type it was made from (or security.new_device).")
    org_id: str | None
    title: str
    body: str
    data: dict[str, Any]
    event_id: str
    read_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        return cls(
            id=n.id,
            category=n.category,
            kind=n.kind,
            org_id=n.org_id,
            title=n.title,
            body=n.body,
            data=n.data,
            event_id=n.event_id,
            read_at=n.read_at,
            created_at=n.created_at,
        )


class ChannelSettings(BaseModel):
    in_app: bool
    email: bool


class CategorySettings(ChannelSettings):
    category: str
    description: str
    locked: bool = Field(description="Security notices cannot be switched off.")


class NotificationSettings(BaseModel):
    categories: list[CategorySettings]


class NotificationSettingsUpdate(BaseModel):
    categories: dict[str, ChannelSettings] = Field(
        description="Category name -> its channels; categories left out keep their settings."
    )


class ReadAllResult(BaseModel):
    marked: int


async def _settings(session: DbSession, user_id: str) -> NotificationSettings:
    channels = await channels_of(session, user_id)
    return NotificationSettings(
        categories=[
            CategorySettings(
                category=c.name,
                description=c.description,
                locked=c.locked,
                **channels[c.name],
            )
            for c in CATEGORIES.values()
        ]
    )


@router.get("", response_model=Page[NotificationOut])
async def list_notifications(
    session: DbSession,
    principal: UserPrincipal,
    page: Annotated[PageParams, Depends(page_params)],
    unread: Annotated[bool, Query(description="Only notices not yet read.")] = False,
) -> Page[NotificationOut]:
    """Your notices, newest first."""
    stmt = select(Notification).where(
        Notification.user_id == principal.user_id, Notification.in_app.is_(True)
    )
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    rows, cursor = await paginate(session, stmt, Notification, page)
    return Page(data=[NotificationOut.of(n) for n in rows], next_cursor=cursor)


@router.get("/stream", response_class=StreamingResponse, responses=SSE_RESPONSES)
async def stream_notifications(
    request: Request,
    principal: UserPrincipal,
    last_event_id: Annotated[str | None, Header(description="Resume after this notice.")] = None,
) -> StreamingResponse:
    """SSE stream of your new notices (event: `notification`, data: the notice)."""
    user_id = principal.user_id
    assert user_id is not None
    db = database(request)

    async def read(after: str, limit: int) -> list[Row]:
        stmt = (
            select(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.in_app.is_(True),
                Notification.id > after,
            )
            .order_by(Notification.id)
            .limit(limit)
        )
        async with db.read_sessions() as session:
            rows = (await session.execute(stmt)).scalars()
            return [
                Row(n.id, "notification", NotificationOut.of(n).model_dump(mode="json"))
                for n in rows
            ]

    return stream_response(
        follow(
            db.url,
            channel="forkyard_notifications",
            key=user_id,
            prefix="ntf",
            after=start_after("ntf", last_event_id),
            read=read,
            keepalive_s=settings_of(request).events_stream_keepalive_s,
        )
    )


@router.get("/settings", response_model=NotificationSettings)
async def get_notification_settings(
    session: DbSession, principal: UserPrincipal
) -> NotificationSettings:
    """Which categories reach you in the app and by email."""
    assert principal.user_id is not None
    return await _settings(session, principal.user_id)


@router.put("/settings", response_model=NotificationSettings)
async def update_notification_settings(
    body: NotificationSettingsUpdate, session: DbSession, principal: UserPrincipal
) -> NotificationSettings:
    """Choose the channels of some categories (security stays on)."""
    assert principal.user_id is not None
    for name, channels in body.categories.items():
        category = CATEGORIES.get(name)
        msg = None
        if category is None:
            msg = f"unknown category; one of {', '.join(CATEGORIES)}"
        elif category.locked and not (channels.in_app and channels.email):
            msg = "security notices cannot be switched off"
        if msg:
            raise ValidationFailed(
                details={"fields": [{"loc": ["body", "categories", name], "msg": msg}]}
            )
    for name, channels in body.categories.items():
        for channel in CHANNELS:
            stmt = insert(NotificationSetting).values(
                user_id=principal.user_id,
                category=name,
                channel=channel,
                enabled=getattr(channels, channel),
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["user_id", "category", "channel"],
                    set_={"enabled": stmt.excluded.enabled},
                )
            )
    return await _settings(session, principal.user_id)


@router.post("/read-all", response_model=ReadAllResult)
async def read_all_notifications(session: DbSession, principal: UserPrincipal) -> ReadAllResult:
    """Mark every one of your notices read."""
    result = await session.execute(
        update(Notification)
        .where(
            Notification.user_id == principal.user_id,
            Notification.in_app.is_(True),
            Notification.read_at.is_(None),
        )
        .values(read_at=utcnow())
        .returning(Notification.id)
    )
    return ReadAllResult(marked=len(result.all()))


@router.post("/{id}/read", response_model=NotificationOut)
async def read_notification(
    id: str, session: DbSession, principal: UserPrincipal
) -> NotificationOut:
    """Mark one notice read."""
    n = await session.get(Notification, id) if has_prefix(id, "ntf") else None
    if n is None or n.user_id != principal.user_id:
        raise NotFound.of("Notification", id)
    if n.read_at is None:
        n.read_at = utcnow()
    return NotificationOut.of(n)
