"""Deleting an account: a soft delete that revokes every credential and scrubs personal data,
keeping only the row (for audit references) under a tombstone address.

The cascade: sessions revoked; API keys the user made, and every key of the personal org,
revoked; memberships in team orgs removed (a last owner must hand over first); the personal org
marked deleted and the `user.deleted` event emitted (compute's subscriber stops the org's
instances and queues them for deletion); MFA factors, backup codes, pending codes and
challenges, one-time tokens, OAuth links and SSH keys deleted; name, email, phone and password
scrubbed."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.events import Actor, emit
from forkyard.identity.events import UserDeleted
from forkyard.identity.models import (
    ApiKey,
    BackupCode,
    LoginChallenge,
    MfaCode,
    MfaFactor,
    OAuthIdentity,
    OneTimeToken,
    SshKey,
    User,
)
from forkyard.identity.principal import Principal
from forkyard.identity.service import revoke_sessions
from forkyard.kit.clock import utcnow
from forkyard.tenants.models import Membership, Org
from forkyard.tenants.queries import check_not_last_owner, lock_org


async def delete_account(session: AsyncSession, user: User, principal: Principal) -> None:
    # The user's memberships across all their orgs (theirs to leave, not a tenant's lookup),
    # in org order so that the org locks below are always taken in one order.
    memberships = list(
        (
            await session.execute(
                select(Membership).where(Membership.user_id == user.id).order_by(Membership.org_id)
            )
        ).scalars()
    )
    # Not a tenancy check: the personal org goes with the account; a team org keeps an owner.
    team: list[Membership] = []
    for membership in memberships:
        if membership.org_id == user.personal_org_id:
            continue
        # The same rule, under the same lock, as demoting or removing an owner (orgs); the row
        # is read again under the lock, as a promotion or a removal may have committed since.
        await lock_org(session, membership.org_id)
        fresh = (
            await session.execute(
                select(Membership)
                .where(Membership.id == membership.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if fresh is None:
            continue  # removed from that org meanwhile: nothing left to leave
        team.append(fresh)
        if fresh.role == "owner":
            await check_not_last_owner(
                session,
                fresh,
                "Hand over ownership of your team orgs before deleting the account.",
            )
    now = utcnow()
    await revoke_sessions(session, user.id, reason="account_deleted")
    await session.execute(
        update(ApiKey)
        .where(ApiKey.created_by == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if user.personal_org_id:
        # Every key of the personal org, whoever made it (a bulk update: owned() builds selects).
        await session.execute(
            update(ApiKey)
            .where(ApiKey.org_id == user.personal_org_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        personal = await session.get(Org, user.personal_org_id)
        if personal is not None:
            personal.deleted_at = now
    for membership in team:
        await session.delete(membership)
    await emit(
        session,
        UserDeleted(
            org_id=user.personal_org_id,
            resource_id=user.id,
            actor=Actor.of(principal),
            personal_org_id=user.personal_org_id,
        ),
    )
    await record(
        session,
        "user.deleted",
        principal=principal,
        org_id=user.personal_org_id,
        target_type="user",
        target_id=user.id,
    )
    for model in (
        MfaCode,
        LoginChallenge,
        MfaFactor,
        BackupCode,
        OneTimeToken,
        OAuthIdentity,
        SshKey,
    ):
        await session.execute(delete(model).where(model.user_id == user.id))
    user.deleted_at = now
    user.email = f"deleted+{user.id}@invalid.forkyard"
    user.name = ""
    user.phone = None
    user.phone_verified_at = None
    user.email_verified_at = None
    user.failed_logins = 0
    user.last_failed_login_at = None
    user.password_hash = None
    user.updated_at = now
