"""Invitations: sending one (its link is emailed), revoking it, and the invited person's side,
previewing and accepting the link."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.config import Settings
from forkyard.db.tenancy import get_owned, owned
from forkyard.events import Actor, emit
from forkyard.identity.models import User
from forkyard.identity.principal import Principal
from forkyard.identity.service import normalize_email
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import random_token, token_hash
from forkyard.kit.errors import NotFound
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email
from forkyard.orgs import schemas
from forkyard.orgs.errors import (
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationRevoked,
    InvitationUsed,
    PersonalOrg,
)
from forkyard.orgs.events import InvitationAccepted, InvitationCreated, MemberAdded
from forkyard.orgs.events import InvitationRevoked as InvitationRevokedEvent
from forkyard.orgs.models import Invitation
from forkyard.orgs.service.access import OrgGrant, require_manage, require_user_session
from forkyard.tenants.models import Membership, Org
from forkyard.tenants.queries import lock_org, role_in

INVITATIONS_PER_ORG_PER_MIN = 20


def invitation_out(inv: Invitation) -> schemas.Invitation:
    return schemas.Invitation(
        id=inv.id,
        org_id=inv.org_id,
        email=inv.email,
        role=inv.role,  # type: ignore[arg-type]
        invited_by=inv.invited_by,
        created_at=inv.created_at,
        expires_at=inv.expires_at,
    )


def pending_invitations(org_id: str) -> Select[Invitation]:
    """The org's invitations whose links still work: not accepted, revoked or expired."""
    return owned(select(Invitation), org_id).where(
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    )


async def invite(
    session: AsyncSession, settings: Settings, grant: OrgGrant, email: str, role: str
) -> Invitation:
    require_manage(grant, role)
    if grant.org.is_personal:
        raise PersonalOrg()
    limiter.hit(f"invite:{grant.org.id}", INVITATIONS_PER_ORG_PER_MIN)
    email = normalize_email(email)
    await lock_org(session, grant.org.id)  # one pending invitation per address, even in a race
    existing_member = (
        await session.execute(
            owned(select(Membership.id), grant.org.id)
            .join(User, User.id == Membership.user_id)
            .where(func.lower(User.email) == email.lower(), User.deleted_at.is_(None))
        )
    ).first()
    if existing_member is not None:
        raise AlreadyMember(details={"email": email})
    now = utcnow()
    # Inviting the same address again replaces the pending invitation: the older link stops working.
    superseded = list(
        (
            await session.execute(
                pending_invitations(grant.org.id).where(
                    func.lower(Invitation.email) == email.lower()
                )
            )
        ).scalars()
    )
    for old in superseded:
        old.revoked_at = now
    token = random_token()
    inv = Invitation(
        org_id=grant.org.id,
        email=email,
        role=role,
        token_hash=token_hash(token),
        invited_by=grant.principal.user_id,
        expires_at=now + timedelta(seconds=settings.invitation_ttl_s),
    )
    session.add(inv)
    await session.flush()
    inviter = await session.get(User, grant.principal.user_id) if grant.principal.user_id else None
    who = f"{inviter.name or inviter.email} ({inviter.email})" if inviter else "An admin"
    await queue_email(
        session,
        email,
        f"You are invited to {grant.org.name} on Forkyard",
        f"{who} invited you to join {grant.org.name} on Forkyard as {role}.\n\n"
        f"Sign in (or create an account with this address) and accept the invitation:\n"
        f"{settings.public_url}/v1/auth/invitations/{token}\n\n"
        f"The link expires on {inv.expires_at:%Y-%m-%d %H:%M} UTC.\n",
    )
    superseded_ids = [old.id for old in superseded]
    await emit(
        session, InvitationCreated.of(inv, Actor.of(grant.principal), superseded=superseded_ids)
    )
    await record(
        session,
        "invitation.created",
        principal=grant.principal,
        org_id=grant.org.id,
        target_type="invitation",
        target_id=inv.id,
        data={"email": email, "role": role, "superseded": superseded_ids},
    )
    return inv


async def revoke_invitation(session: AsyncSession, grant: OrgGrant, inv_id: str) -> None:
    require_manage(grant)
    inv = await get_owned(session, Invitation, inv_id, grant.org.id, kind="Invitation")
    if inv.accepted_at is not None:
        raise InvitationUsed("This invitation was already accepted; remove the member instead.")
    if inv.revoked_at is None:
        inv.revoked_at = utcnow()
        await emit(session, InvitationRevokedEvent.of(inv, Actor.of(grant.principal)))
        await record(
            session,
            "invitation.revoked",
            principal=grant.principal,
            org_id=grant.org.id,
            target_type="invitation",
            target_id=inv.id,
            data={"email": inv.email},
        )


async def usable_invitation(
    session: AsyncSession, token: str, *, for_update: bool = False
) -> tuple[Invitation, Org]:
    """The invitation behind a token, refusing one that is unknown, used, revoked or expired.
    The token is the credential here, not an org: whoever holds it may see what it offers."""
    stmt = select(Invitation).where(Invitation.token_hash == token_hash(token))
    if for_update:
        stmt = stmt.with_for_update()
    inv = (await session.execute(stmt)).scalar_one_or_none()
    org = await session.get(Org, inv.org_id) if inv is not None else None
    if inv is None or org is None or org.deleted_at is not None:
        raise NotFound("This invitation link is not valid.")
    if inv.accepted_at is not None:
        raise InvitationUsed()
    if inv.revoked_at is not None:
        raise InvitationRevoked()
    if inv.expires_at <= utcnow():
        raise InvitationExpired(details={"expired_at": inv.expires_at.isoformat()})
    return inv, org


def emails_match(a: str, b: str) -> bool:
    """Same mailbox: the local part exactly, the domain in any case."""
    return normalize_email(a) == normalize_email(b)


async def preview_invitation(session: AsyncSession, token: str) -> schemas.InvitationPreview:
    inv, org = await usable_invitation(session, token)
    inviter = await session.get(User, inv.invited_by) if inv.invited_by else None
    return schemas.InvitationPreview(
        org_id=org.id,
        org_name=org.name,
        email=inv.email,
        role=inv.role,  # type: ignore[arg-type]
        inviter=schemas.Inviter(id=inviter.id, name=inviter.name, email=inviter.email)
        if inviter is not None and inviter.deleted_at is None
        else None,
        expires_at=inv.expires_at,
    )


async def accept_invitation(
    session: AsyncSession, principal: Principal, token: str
) -> tuple[Org, str]:
    user_id = require_user_session(principal)
    inv, org = await usable_invitation(session, token, for_update=True)
    user = await session.get(User, user_id)
    if user is None or not emails_match(user.email, inv.email):
        raise InvitationEmailMismatch()
    if await role_in(session, org.id, user_id) is not None:
        raise AlreadyMember(details={"org_id": org.id})
    session.add(Membership(org_id=org.id, user_id=user_id, role=inv.role))
    inv.accepted_at = utcnow()
    inv.accepted_by = user_id
    await session.flush()
    await emit(session, InvitationAccepted.of(inv, Actor.of(principal), user_id=user_id))
    await emit(
        session,
        MemberAdded(
            org_id=org.id,
            resource_id=user_id,
            actor=Actor.of(principal),
            role=inv.role,
            invitation_id=inv.id,
        ),
    )
    await record(
        session,
        "invitation.accepted",
        principal=principal,
        org_id=org.id,
        target_type="invitation",
        target_id=inv.id,
        data={"role": inv.role, "user_id": user_id},
    )
    return org, inv.role
