"""Reads of tenancy that more than one domain needs: the org row lock and the last-owner rule
(a member leaving, being demoted or removed, or deleting their account)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.db.tenancy import owned
from forkyard.tenants.errors import LastOwner
from forkyard.tenants.models import IpAllowlistEntry, Membership, Org


async def lock_org(session: AsyncSession, org_id: str) -> None:
    """Serialise membership changes per org: two owners demoting each other at once (or one
    deleting their account) would otherwise both see another owner left, or deadlock on each
    other's rows."""
    await session.execute(select(Org.id).where(Org.id == org_id).with_for_update())


async def check_not_last_owner(
    session: AsyncSession, membership: Membership, message: str | None = None
) -> None:
    """Refuse (409 `last_owner`) to take the owner role from the org's only owner. The caller
    holds the org's lock (`lock_org`), so the count cannot go stale before it commits."""
    owners = (
        await session.execute(
            owned(select(Membership.user_id), membership.org_id).where(Membership.role == "owner")
        )
    ).scalars()
    if list(owners) == [membership.user_id]:
        raise LastOwner(
            message, details={"org_id": membership.org_id, "user_id": membership.user_id}
        )


async def role_in(session: AsyncSession, org_id: str, user_id: str) -> str | None:
    """The user's role in the org, or None when they are not a member."""
    stmt = owned(select(Membership.role), org_id).where(Membership.user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def allowlist_of(session: AsyncSession, org_id: str) -> list[str]:
    """The org's allowed address ranges (an empty list allows every address)."""
    return list((await session.execute(owned(select(IpAllowlistEntry.cidr), org_id))).scalars())
