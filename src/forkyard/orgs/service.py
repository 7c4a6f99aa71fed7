"""The rules of orgs: who may act in which org, roles and the last owner, invitations and the IP
allowlist. Routes name the org in the path; `org_access` turns that into a checked grant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.config import Settings
from forkyard.db.tenancy import get_owned, owned
from forkyard.events import Actor, emit
from forkyard.identity.deps import IpNotAllowed, ip_in_allowlist
from forkyard.identity.errors import CookieSessionRequired
from forkyard.identity.models import ApiKey, User
from forkyard.identity.principal import ROLE_SCOPES, Principal
from forkyard.identity.service import normalize_email
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import random_token, token_hash
from forkyard.kit.errors import Forbidden, NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.ratelimit import limiter
from forkyard.mail.sender import queue_email
from forkyard.orgs import schemas
from forkyard.orgs.errors import (
    AllowlistEntryExists,
    AllowlistFull,
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationRevoked,
    InvitationUsed,
    LastOwner,
    OwnerRequired,
    PersonalOrg,
    WouldLockOut,
)
from forkyard.orgs.events import (
    InvitationAccepted,
    InvitationCreated,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
)
from forkyard.orgs.events import InvitationRevoked as InvitationRevokedEvent
from forkyard.orgs.models import Invitation, IpAllowlistEntry, Membership, Org

MAX_ALLOWLIST_ENTRIES = 200
INVITATIONS_PER_ORG_PER_MIN = 20


@dataclass
class OrgGrant:
    """What the caller may do in one org named by the path."""

    org: Org
    role: str | None  # None for API keys, which carry scopes instead
    scopes: frozenset[str]
    principal: Principal

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"This needs the `{scope}` scope.", details={"scope": scope})


def require_manage(grant: OrgGrant, *roles: str, leaving: bool = False) -> None:
    """The one rule for who may change an org's members and invitations:
    - a member may always leave (the last-owner rule still applies);
    - anything else needs the admin scope;
    - touching the owner role (`roles` holds "owner": granting it, or changing or removing an
      owner) needs an owner; API keys carry scopes, never a role, so they never can.
    Call it first with what is known from the request (so a caller without the scope learns
    nothing about members), then again with the member's current role once it is read."""
    if leaving:
        return
    grant.require("admin")
    if "owner" in roles and not grant.is_owner:
        raise OwnerRequired()


def require_user_session(principal: Principal) -> str:
    if principal.kind != "user" or principal.user_id is None:
        raise CookieSessionRequired()
    return principal.user_id


async def org_access(session: AsyncSession, principal: Principal, org_id: str) -> OrgGrant:
    """The caller's grant in `org_id`, or 404 when they are not in it (never 403: that would
    confirm the org exists). An API key acts only for its own org."""
    org = await session.get(Org, org_id) if has_prefix(org_id, "org") else None
    if org is None or org.deleted_at is not None:
        raise NotFound.of("Org", org_id)
    if principal.kind == "api_key":
        if principal.org_id != org.id:
            raise NotFound.of("Org", org_id)
        grant = OrgGrant(org, None, principal.scopes, principal)
    else:
        role = None
        if principal.user_id is not None:
            role = (
                await session.execute(
                    select(Membership.role).where(
                        Membership.org_id == org.id, Membership.user_id == principal.user_id
                    )
                )
            ).scalar_one_or_none()
        if role is None:
            raise NotFound.of("Org", org_id)
        grant = OrgGrant(org, role, ROLE_SCOPES[role], principal)
    if org.id != principal.org_id:
        # get_principal enforced the acting org's allowlist; the path may name another org.
        cidrs = list(
            (
                await session.execute(
                    select(IpAllowlistEntry.cidr).where(IpAllowlistEntry.org_id == org.id)
                )
            ).scalars()
        )
        if cidrs and not ip_in_allowlist(principal.ip, cidrs):
            raise IpNotAllowed()
    return grant


def org_out(org: Org, role: str | None) -> schemas.Org:
    return schemas.Org(
        id=org.id,
        name=org.name,
        is_personal=org.is_personal,
        role=role,  # type: ignore[arg-type]
        created_at=org.created_at,
    )


async def create_team_org(session: AsyncSession, principal: Principal, name: str) -> Org:
    user_id = require_user_session(principal)
    org = Org(name=name, is_personal=False, created_by=user_id)
    session.add(org)
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=user_id, role="owner"))
    await session.flush()
    await record(
        session,
        "org.created",
        principal=principal,
        org_id=org.id,
        target_type="org",
        target_id=org.id,
        data={"name": name},
    )
    return org


async def rename_org(session: AsyncSession, grant: OrgGrant, name: str) -> None:
    grant.require("admin")
    old = grant.org.name
    if name == old:
        return
    grant.org.name = name
    await record(
        session,
        "org.renamed",
        principal=grant.principal,
        org_id=grant.org.id,
        target_type="org",
        target_id=grant.org.id,
        data={"from": old, "to": name},
    )


# Members -----------------------------------------------------------------------------------


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


async def _lock_org(session: AsyncSession, org_id: str) -> None:
    """Serialise membership changes per org: two owners demoting each other at once would
    otherwise both see another owner left (or deadlock on each other's rows)."""
    await session.execute(select(Org.id).where(Org.id == org_id).with_for_update())


async def _membership(session: AsyncSession, org_id: str, user_id: str) -> Membership:
    if not has_prefix(user_id, "usr"):
        raise NotFound.of("Member", user_id)
    await _lock_org(session, org_id)
    row = (
        await session.execute(
            select(Membership)
            .where(Membership.org_id == org_id, Membership.user_id == user_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound.of("Member", user_id)
    return row


async def _check_not_last_owner(session: AsyncSession, membership: Membership) -> None:
    # The caller holds the org's lock (_membership), so this count cannot go stale.
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
    if list(owners) == [membership.user_id]:
        raise LastOwner(details={"org_id": membership.org_id, "user_id": membership.user_id})


async def _revoke_keys_beyond(
    session: AsyncSession, org_id: str, user_id: str, allowed: frozenset[str]
) -> list[str]:
    """A member's API keys may not outlive their role: revoke the ones with scopes it lacks."""
    keys = (
        await session.execute(
            select(ApiKey).where(
                ApiKey.org_id == org_id,
                ApiKey.created_by == user_id,
                ApiKey.revoked_at.is_(None),
            )
        )
    ).scalars()
    revoked = []
    now = utcnow()
    for key in keys:
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
            await _check_not_last_owner(session, membership)
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
        await _check_not_last_owner(session, membership)
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


# Invitations -------------------------------------------------------------------------------


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


def pending_filter(org_id: str) -> list[ColumnElement[bool]]:
    return [
        Invitation.org_id == org_id,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    ]


async def invite(
    session: AsyncSession, settings: Settings, grant: OrgGrant, email: str, role: str
) -> Invitation:
    require_manage(grant, role)
    if grant.org.is_personal:
        raise PersonalOrg()
    limiter.hit(f"invite:{grant.org.id}", INVITATIONS_PER_ORG_PER_MIN)
    email = normalize_email(email)
    await _lock_org(session, grant.org.id)  # one pending invitation per address, even in a race
    existing_member = (
        await session.execute(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.org_id == grant.org.id,
                func.lower(User.email) == email.lower(),
                User.deleted_at.is_(None),
            )
        )
    ).first()
    if existing_member is not None:
        raise AlreadyMember(details={"email": email})
    now = utcnow()
    # Inviting the same address again replaces the pending invitation: the older link stops working.
    superseded = (
        (
            await session.execute(
                update(Invitation)
                .where(*pending_filter(grant.org.id), func.lower(Invitation.email) == email.lower())
                .values(revoked_at=now)
                .returning(Invitation.id)
            )
        )
        .scalars()
        .all()
    )
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
    await emit(
        session, InvitationCreated.of(inv, Actor.of(grant.principal), superseded=list(superseded))
    )
    await record(
        session,
        "invitation.created",
        principal=grant.principal,
        org_id=grant.org.id,
        target_type="invitation",
        target_id=inv.id,
        data={"email": email, "role": role, "superseded": list(superseded)},
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
    """The invitation behind a token, refusing one that is unknown, used, revoked or expired."""
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
    already = (
        await session.execute(
            select(Membership.id).where(Membership.org_id == org.id, Membership.user_id == user_id)
        )
    ).first()
    if already is not None:
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


# IP allowlist ------------------------------------------------------------------------------


def allowlist_out(entry: IpAllowlistEntry) -> schemas.AllowlistEntry:
    return schemas.AllowlistEntry(
        id=entry.id,
        cidr=entry.cidr,
        description=entry.description,
        created_by=entry.created_by,
        created_at=entry.created_at,
    )


async def _allowlist_cidrs(session: AsyncSession, org_id: str) -> list[tuple[str, str]]:
    rows = await session.execute(
        owned(select(IpAllowlistEntry.id, IpAllowlistEntry.cidr), org_id).with_for_update()
    )
    return [(r[0], r[1]) for r in rows]


async def add_allowlist_entry(
    session: AsyncSession, principal: Principal, body: schemas.AllowlistEntryCreate
) -> IpAllowlistEntry:
    assert principal.org_id is not None
    current = await _allowlist_cidrs(session, principal.org_id)
    if any(cidr == body.cidr for _, cidr in current):
        raise AllowlistEntryExists(details={"cidr": body.cidr})
    if len(current) >= MAX_ALLOWLIST_ENTRIES:
        raise AllowlistFull(details={"max": MAX_ALLOWLIST_ENTRIES})
    after = [cidr for _, cidr in current] + [body.cidr]
    if not body.confirm_lockout and not ip_in_allowlist(principal.ip, after):
        raise WouldLockOut(details={"your_ip": principal.ip})
    entry = IpAllowlistEntry(
        org_id=principal.org_id,
        cidr=body.cidr,
        description=body.description.strip(),
        created_by=principal.actor_id,
    )
    session.add(entry)
    await session.flush()
    await record(
        session,
        "ip_allowlist.added",
        principal=principal,
        target_type="ip_allowlist_entry",
        target_id=entry.id,
        data={"cidr": entry.cidr, "confirmed_lockout": body.confirm_lockout},
    )
    return entry


async def remove_allowlist_entry(
    session: AsyncSession, principal: Principal, entry_id: str, confirm_lockout: bool
) -> None:
    assert principal.org_id is not None
    entry = await get_owned(
        session, IpAllowlistEntry, entry_id, principal, kind="IP allowlist entry"
    )
    after = [
        cidr
        for ident, cidr in await _allowlist_cidrs(session, principal.org_id)
        if ident != entry.id
    ]
    # An empty list allows everyone; a shorter one may no longer include the caller.
    if after and not confirm_lockout and not ip_in_allowlist(principal.ip, after):
        raise WouldLockOut(details={"your_ip": principal.ip})
    await session.delete(entry)
    await record(
        session,
        "ip_allowlist.removed",
        principal=principal,
        target_type="ip_allowlist_entry",
        target_id=entry.id,
        data={"cidr": entry.cidr, "confirmed_lockout": confirm_lockout},
    )
