"""The facts of orgs: members and invitations (the events kernel: forkyard.events)."""

from __future__ import annotations

from typing import Any, ClassVar

from forkyard.events import SYSTEM, Actor, Event
from forkyard.orgs.models import Invitation


class MemberEvent(Event):
    """A membership changed; the resource is the member's user."""

    resource_type: ClassVar[str] = "user"
    role: str


class MemberAdded(MemberEvent):
    """Joined the org (by accepting `invitation_id`)."""

    type = "member.added"
    invitation_id: str | None


class MemberRoleChanged(MemberEvent):
    type = "member.role_changed"
    previous_role: str
    revoked_api_keys: list[str]


class MemberRemoved(MemberEvent):
    """Removed by an admin, or left (`left`); their keys beyond the org are revoked."""

    type = "member.removed"
    left: bool
    revoked_api_keys: list[str]


class InvitationEvent(Event):
    resource_type: ClassVar[str] = "invitation"
    email: str
    role: str

    @classmethod
    def of(cls, inv: Invitation, actor: Actor = SYSTEM, **extra: Any) -> Any:
        return cls(
            org_id=inv.org_id,
            resource_id=inv.id,
            actor=actor,
            email=inv.email,
            role=inv.role,
            **extra,
        )


class InvitationCreated(InvitationEvent):
    """Sent (its link is emailed at once, in the same transaction: the token is never in an
    event). `superseded`: the pending invitations to the same address it replaced."""

    type = "invitation.created"
    superseded: list[str]


class InvitationRevoked(InvitationEvent):
    type = "invitation.revoked"


class InvitationAccepted(InvitationEvent):
    type = "invitation.accepted"
    user_id: str
