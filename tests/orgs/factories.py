"""Small factories for orgs' rows, for service-level tests that need no HTTP and no root."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.identity.models import User
from forkyard.tenants.models import IpAllowlistEntry, Membership, Org


async def make_org(session: AsyncSession, name: str = "acme") -> Org:
    org = Org(name=name)
    session.add(org)
    await session.flush()
    return org


async def make_allowlist_entry(
    session: AsyncSession, org: Org, cidr: str = "192.0.2.0/24"
) -> IpAllowlistEntry:
    entry = IpAllowlistEntry(org_id=org.id, cidr=cidr)
    session.add(entry)
    await session.flush()
    return entry


async def make_member(
    session: AsyncSession, org: Org, email: str, role: str = "member"
) -> Membership:
    """A user row (no password, no sign-in) who is a member of `org` with `role`."""
    user = User(email=email)
    session.add(user)
    await session.flush()
    membership = Membership(org_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    return membership
