"""Making a notice for users from an event: once per user and event, in the app and by email
as each user's settings say; security notices always go both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.db.tenancy import owned
from forkyard.identity.models import User
from forkyard.kit.ids import new_id
from forkyard.mail.sender import queue_email
from forkyard.notifications.models import Notification, NotificationSetting
from forkyard.tenants.models import Membership

CHANNELS = ("in_app", "email")


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    in_app: bool  # defaults
    email: bool
    locked: bool = False  # cannot be switched off


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            "security",
            "Sign-ins from a new device, changes to your password and second factors. Always sent.",
            True,
            True,
            locked=True,
        ),
        Category("instances", "An instance failed, or was stopped for idleness.", True, True),
        Category(
            "limits",
            "An org's use of a limit (instances, vCPUs, memory, disk) passed 80%: owners and"
            " admins.",
            True,
            True,
        ),
        Category("org", "Invitations to an org.", True, False),
        Category(
            "webhooks", "A webhook endpoint was disabled because it kept failing.", True, True
        ),
    )
}


async def channels_of(session: AsyncSession, user_id: str) -> dict[str, dict[str, bool]]:
    """Every category's channels for this user: their choice, else the default."""
    chosen = {
        (s.category, s.channel): s.enabled
        for s in (
            await session.execute(
                select(NotificationSetting).where(NotificationSetting.user_id == user_id)
            )
        ).scalars()
    }
    out = {}
    for cat in CATEGORIES.values():
        defaults = {"in_app": cat.in_app, "email": cat.email}
        out[cat.name] = {
            ch: True if cat.locked else chosen.get((cat.name, ch), defaults[ch]) for ch in CHANNELS
        }
    return out


async def org_admins(session: AsyncSession, org_id: str) -> list[str]:
    """The users who run an org (owners and admins): who is told about its machinery."""
    rows = await session.execute(
        owned(select(Membership.user_id), org_id).where(Membership.role.in_(("owner", "admin")))
    )
    return list(rows.scalars())


async def notify(
    session: AsyncSession,
    user_ids: list[str],
    *,
    category: str,
    event_id: str,
    kind: str,
    org_id: str | None,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> int:
    """One notice per user for this event; a user who has it already gets nothing more."""
    made = 0
    for user_id in dict.fromkeys(user_ids):
        user = await session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            continue
        channels = (await channels_of(session, user_id))[category]
        inserted = await session.execute(
            insert(Notification)
            .values(
                id=new_id("ntf"),
                user_id=user_id,
                org_id=org_id,
                category=category,
                kind=kind,
                title=title,
                body=body,
                data=data or {},
                event_id=event_id,
                in_app=channels["in_app"],
                emailed=channels["email"],
            )
            .on_conflict_do_nothing(index_elements=["user_id", "event_id"])
            .returning(Notification.id)
        )
        if inserted.first() is None:
            continue
        made += 1
        if channels["email"]:
            await queue_email(session, user.email, f"Forkyard: {title}", body)
    return made
