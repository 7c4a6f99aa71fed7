"""The facts of accounts and API keys (the events kernel: forkyard.events)."""

from __future__ import annotations

from typing import ClassVar

from forkyard.events import Actor, Event
from forkyard.identity.models import ApiKey, AuthSession, User


class UserSignedIn(Event):
    """A session started: by password, magic link, OAuth or passkey, with or without MFA."""

    type = "user.signed_in"
    resource_type: ClassVar[str] = "user"
    session_id: str
    method: str
    mfa: bool

    @classmethod
    def of(cls, user: User, auth_session: AuthSession, method: str, mfa: bool) -> UserSignedIn:
        actor = Actor(type="user", id=user.id)
        return cls(
            org_id=user.personal_org_id,
            resource_id=user.id,
            actor=actor,
            session_id=auth_session.id,
            method=method,
            mfa=mfa,
        )


class UserDeleted(Event):
    """An account was deleted: credentials revoked, personal data scrubbed; `personal_org_id`
    is gone with it (compute deletes its instances on this event)."""

    type = "user.deleted"
    resource_type: ClassVar[str] = "user"
    personal_org_id: str | None


class ApiKeyEvent(Event):
    resource_type: ClassVar[str] = "api_key"
    name: str
    scopes: list[str]

    @classmethod
    def of(cls, key: ApiKey, actor: Actor) -> ApiKeyEvent:
        return cls(
            org_id=key.org_id, resource_id=key.id, actor=actor, name=key.name, scopes=key.scopes
        )


class ApiKeyCreated(ApiKeyEvent):
    type = "api_key.created"


class ApiKeyRotated(ApiKeyEvent):
    type = "api_key.rotated"


class ApiKeyRevoked(ApiKeyEvent):
    type = "api_key.revoked"
