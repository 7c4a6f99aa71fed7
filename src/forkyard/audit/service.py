"""Recording audit events. Called inside the request's transaction so the event and the change
it describes commit together."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.models import AuditEvent
from forkyard.kit.http import client_ip


class AuditActor(Protocol):
    """Who acted, as the audit log needs it (identity's Principal is one): the audit kernel sits
    below identity and so names no caller's type."""

    @property
    def org_id(self) -> str | None: ...
    @property
    def actor_id(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def ip(self) -> str: ...
    @property
    def user_agent(self) -> str | None: ...


class AccountHolder(Protocol):
    """The account an event is about when no principal exists yet (identity's User is one)."""

    @property
    def id(self) -> str: ...
    @property
    def personal_org_id(self) -> str | None: ...


async def record(
    session: AsyncSession,
    action: str,
    *,
    principal: AuditActor | None = None,
    org_id: str | None = None,
    actor_id: str | None = None,
    actor_type: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        org_id=org_id if org_id is not None else (principal.org_id if principal else None),
        actor_id=actor_id if actor_id is not None else (principal.actor_id if principal else None),
        actor_type=actor_type or (principal.kind if principal else "anonymous"),
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip if ip is not None else (principal.ip if principal else None),
        user_agent=user_agent
        if user_agent is not None
        else (principal.user_agent if principal else None),
        data=data or {},
    )
    session.add(event)
    return event


# Who stands behind a request about a user's own account that has no principal yet.
UserActor = Literal["user", "unverified", "stranger"]


async def record_for_user(
    session: AsyncSession,
    request: Request | None,
    user: AccountHolder,
    action: str,
    *,
    actor: UserActor = "user",
    **details: Any,
) -> AuditEvent:
    """An event about `user`'s own account from a request that has no principal yet (sign-up,
    sign-in, emailed links): in their personal org, on their user row, with the request's
    address and user agent. `actor` says who acted: "user", the account holder; "unverified",
    someone who passed the first factor but still owes the second; "stranger", someone who only
    named the account (an address typed into a form). `details` are `record`'s keywords."""
    fields: dict[str, Any] = {
        "org_id": user.personal_org_id,
        "actor_id": None if actor == "stranger" else user.id,
        "actor_type": "user" if actor == "user" else "anonymous",
        "target_type": "user",
        "target_id": user.id,
    }
    if request is not None:
        fields["ip"] = client_ip(request, request.app.state.settings.trusted_proxies)
        fields["user_agent"] = request.headers.get("user-agent")
    return await record(session, action, **(fields | details))
