"""An org's members: changing a role and removing a member (or leaving), under the last-owner
rule; a member's API keys never outlive the role that minted them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.db.tenancy import owned
from forkyard.events import Actor, emit
from forkyard.identity.models import ApiKey, User
from forkyard.identity.principal import ROLE_SCOPES
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.orgs import schemas
from forkyard.orgs.events import MemberRemoved, MemberRoleChanged
from forkyard.orgs.service.access import OrgGrant, require_manage
from forkyard.tenants.models import Membership
from forkyard.tenants.queries import check_not_last_owner, lock_org


def member_out(membership: Membership, user: User) -> schemas.Member:
    return schemas.Member(
        user_id=user.id,
        org_id=membership.org_id,
        email=user.email,
        name=user.name,
        role=membership.role,  # type: ignore[arg-type]
        joined_at=membership.created_at,
    )


async def users_by_id(session: AsyncSession, ids: list[str]) -> dict[str, User]:
    if not ids:
        return {}
    rows = (await session.execute(select(User).where(User.id.in_(ids)))).scalars()
    return {u.id: u for u in rows}


async def _membership(session: AsyncSession, org_id: str, user_id: str) -> Membership:
    """The member's row, locked, with the org's lock held (so the last-owner count that may
    follow cannot go stale); 404 for anyone not in this org."""
    if not has_prefix(user_id, "usr"):
        raise NotFound.of("Member", user_id)
    await lock_org(session, org_id)
    stmt = owned(select(Membership), org_id).where(Membership.user_id == user_id)
    row = (await session.execute(stmt.with_for_update())).scalar_one_or_none()
    if row is None:
        raise NotFound.of("Member", user_id)
    return row


async def _revoke_keys_beyond(
    session: AsyncSession, org_id: str, user_id: str, allowed: frozenset[str]
) -> list[str]:
    """A member's API keys may not outlive their role: revoke the ones with scopes it lacks."""
    stmt = owned(select(ApiKey), org_id).where(
        ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None)
    )
    revoked = []
    now = utcnow()
    for key in (await session.execute(stmt)).scalars():
        if not set(key.scopes) <= allowed:
            key.revoked_at = now
            revoked.append(key.id)
    return revoked


async def change_role(
    session: AsyncSession, grant: OrgGrant, user_id: str, role: str
) -> tuple[Membership, User]:
    require_manage(grant)
    membership = await _membership(session, grant.org.id, user_id)
    require_manage(grant, role, membership.role)
    old = membership.role
    if old != role:
        if old == "owner":
            await check_not_last_owner(session, membership)
        membership.role = role
        revoked = await _revoke_keys_beyond(session, grant.org.id, user_id, ROLE_SCOPES[role])
        await emit(
            session,
            MemberRoleChanged(
                org_id=grant.org.id,
                resource_id=user_id,
                actor=Actor.of(grant.principal),
                role=role,
                previous_role=old,
                revoked_api_keys=revoked,
            ),
        )
        await record(
            session,
            "member.role_changed",
            principal=grant.principal,
            org_id=grant.org.id,
            target_type="user",
            target_id=user_id,
            data={"from": old, "to": role, "revoked_api_keys": revoked},
        )
    user = await session.get(User, user_id)
    assert user is not None
    return membership, user


async def remove_member(session: AsyncSession, grant: OrgGrant, user_id: str) -> None:
    principal = grant.principal
    leaving = principal.kind == "user" and principal.user_id == user_id
    require_manage(grant, leaving=leaving)
    membership = await _membership(session, grant.org.id, user_id)
    require_manage(grant, membership.role, leaving=leaving)
    if membership.role == "owner":
        await check_not_last_owner(session, membership)
    revoked = await _revoke_keys_beyond(session, grant.org.id, user_id, frozenset())
    await session.delete(membership)
    await emit(
        session,
        MemberRemoved(
            org_id=grant.org.id,
            resource_id=user_id,
            actor=Actor.of(principal),
            role=membership.role,
            left=leaving,
            revoked_api_keys=revoked,
        ),
    )
    await record(
        session,
        "member.left" if leaving else "member.removed",
        principal=principal,
        org_id=grant.org.id,
        target_type="user",
        target_id=user_id,
        data={"role": membership.role, "revoked_api_keys": revoked},
    )
