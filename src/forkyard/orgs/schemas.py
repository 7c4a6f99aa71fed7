"""Request and response shapes for orgs, members, invitations, the IP allowlist and the audit
log."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

Role = Literal["owner", "admin", "member", "viewer"]


class OrgCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the name cannot be blank")
        return value.strip()


class OrgUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the name cannot be blank")
        return value.strip() if value is not None else None


class Org(BaseModel):
    id: str
    name: str
    is_personal: bool
    role: Role | None = Field(
        description="Your role in the org; null when calling with an API key (keys have scopes)."
    )
    created_at: datetime


class Member(BaseModel):
    user_id: str
    org_id: str
    email: str
    name: str
    role: Role
    joined_at: datetime


class MemberUpdate(BaseModel):
    role: Role


class InvitationCreate(BaseModel):
    email: EmailStr
    role: Role = "member"


class Invitation(BaseModel):
    """An invitation as org admins see it (the token is only ever emailed)."""

    id: str
    org_id: str
    email: str
    role: Role
    invited_by: str | None
    created_at: datetime
    expires_at: datetime


class Inviter(BaseModel):
    id: str
    name: str
    email: str


class InvitationPreview(BaseModel):
    """What the invitee sees before accepting."""

    org_id: str
    org_name: str
    email: str
    role: Role
    inviter: Inviter | None
    expires_at: datetime


class AllowlistEntryCreate(BaseModel):
    cidr: str = Field(
        max_length=64, description="An IPv4 or IPv6 address or CIDR range, e.g. 203.0.113.0/24."
    )
    description: str = Field(default="", max_length=200)
    confirm_lockout: bool = Field(
        default=False,
        description="Add the entry even though your own address would no longer be allowed.",
    )

    @field_validator("cidr")
    @classmethod
    def _normalise(cls, value: str) -> str:
        try:
            # strict=False: host bits are cleared, so 10.0.0.7/24 is stored as 10.0.0.0/24.
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError as exc:
            raise ValueError("not an IPv4 or IPv6 address or CIDR range") from exc
        if "%" in str(network):
            # A zone id (fe80::1%eth0) names a link on one host; it never matches a client.
            raise ValueError("IPv6 zone ids are not allowed")
        return str(network)


class AllowlistEntry(BaseModel):
    id: str
    cidr: str
    description: str
    created_by: str | None
    created_at: datetime


class AuditEventOut(BaseModel):
    id: str
    created_at: datetime
    action: str
    actor_id: str | None
    actor_type: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    data: dict[str, Any]
