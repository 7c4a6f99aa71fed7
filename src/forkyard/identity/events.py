"""The facts of accounts and API keys (the events kernel: forkyard.events)."""

from __future__ import annotations

from typing import ClassVar, Literal

from forkyard.events import Actor, Event
from forkyard.identity.models import ApiKey, AuthSession, MfaFactor, User


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


# Changes to how an account signs in. Account-level like user.signed_in: `org_id` is the user's
# personal org (so its webhooks hear of them, never a team org's), and the payloads name what
# changed, never a secret (no password, hash, TOTP secret, phone number or backup code).


class UserPasswordChanged(Event):
    """The account's password was set, changed, or reset (by an emailed reset link)."""

    type = "user.password_changed"
    resource_type: ClassVar[str] = "user"
    how: Literal["set", "changed", "reset"]

    @classmethod
    def of(cls, user: User, how: Literal["set", "changed", "reset"]) -> UserPasswordChanged:
        return cls(
            org_id=user.personal_org_id,
            resource_id=user.id,
            actor=Actor(type="user", id=user.id),
            how=how,
        )


class UserMfaFactorAdded(Event):
    """A second factor (totp, sms, email, webauthn) was confirmed on the account."""

    type = "user.mfa_factor_added"
    resource_type: ClassVar[str] = "user"
    factor_id: str
    kind: str

    @classmethod
    def of(cls, user: User, factor: MfaFactor) -> UserMfaFactorAdded:
        return cls(
            org_id=user.personal_org_id,
            resource_id=user.id,
            actor=Actor(type="user", id=user.id),
            factor_id=factor.id,
            kind=factor.kind,
        )


class UserMfaFactorRemoved(Event):
    """Second factors were removed: one by its owner (`removed`), or every one by an account
    recovery (`recovery`: `factor_id` and `kind` are then null)."""

    type = "user.mfa_factor_removed"
    resource_type: ClassVar[str] = "user"
    factor_id: str | None
    kind: str | None
    reason: Literal["removed", "recovery"]

    @classmethod
    def of(cls, user: User, factor: MfaFactor | None) -> UserMfaFactorRemoved:
        # A recovery is done by whoever holds the emailed token: not proven to be the user.
        actor = Actor(type="user", id=user.id) if factor else Actor(type="anonymous")
        return cls(
            org_id=user.personal_org_id,
            resource_id=user.id,
            actor=actor,
            factor_id=factor.id if factor else None,
            kind=factor.kind if factor else None,
            reason="removed" if factor else "recovery",
        )


class UserBackupCodesRegenerated(Event):
    """The account's backup codes were replaced (the old ones stop working)."""

    type = "user.backup_codes_regenerated"
    resource_type: ClassVar[str] = "user"

    @classmethod
    def of(cls, user: User) -> UserBackupCodesRegenerated:
        return cls(
            org_id=user.personal_org_id, resource_id=user.id, actor=Actor(type="user", id=user.id)
        )
