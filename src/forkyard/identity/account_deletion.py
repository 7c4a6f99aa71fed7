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
from forkyard.identity.errors import LastOwner
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
from forkyard.orgs.models import Membership, Org


async def delete_account(session: AsyncSession, user: User, principal: Principal) -> None:
    memberships = list(
        (await session.execute(select(Membership).where(Membership.user_id == user.id))).scalars()
    )
    for membership in memberships:
        if membership.org_id == user.personal_org_id or membership.role != "owner":
            continue
        owners = (
            (
                await session.execute(
                    select(Membership.user_id).where(
                        Membership.org_id == membership.org_id, Membership.role == "owner"
                    )
                )
            )
            .scalars()
            .all()
        )
        if len(owners) == 1:
            raise LastOwner(
                "Hand over ownership of your team orgs before deleting the account.",
                details={"org_id": membership.org_id},
            )
    now = utcnow()
    await revoke_sessions(session, user.id, reason="account_deleted")
    await session.execute(
        update(ApiKey)
        .where(ApiKey.created_by == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if user.personal_org_id:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.org_id == user.personal_org_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        personal = await session.get(Org, user.personal_org_id)
        if personal is not None:
            personal.deleted_at = now
    for membership in memberships:
        if membership.org_id != user.personal_org_id:
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
