"""Org routes: orgs (tag orgs), members (tag members), invitations (tag invitations), the
acting org's IP allowlist and its audit log (tag audit). Routes that name an org in the path act
in that org, not the principal's acting org, and answer 404 to anyone who is not in it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from forkyard.audit.models import AuditEvent
from forkyard.db.session import DbSession
from forkyard.db.tenancy import owned
from forkyard.identity.deps import CurrentPrincipal, OrgAdmin, require_session, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.pagination import Page, PageParams, page_params, paginate
from forkyard.orgs import schemas, service
from forkyard.orgs.models import Invitation
from forkyard.tenants.models import IpAllowlistEntry, Membership, Org

Paging = Annotated[PageParams, Depends(page_params)]

# Registered before `orgs` so the literal `me` segment is never taken for an org id.
allowlist = protected_router("orgs", prefix="/v1/orgs/me/ip-allowlist")
orgs = protected_router("orgs", prefix="/v1/orgs")
members = protected_router("members", prefix="/v1/orgs/{org_id}/members")
invitations = protected_router("invitations", prefix="/v1/orgs/{org_id}/invitations")
invitation_links = protected_router(
    "invitations", prefix="/v1/auth/invitations", requires=require_session
)
audit = protected_router("audit", prefix="/v1/audit")


# Orgs --------------------------------------------------------------------------------------


@orgs.get("", response_model=Page[schemas.Org])
async def list_orgs(
    session: DbSession, principal: CurrentPrincipal, page: Paging
) -> Page[schemas.Org]:
    """The orgs you belong to, with your role in each (an API key sees only its own org)."""
    stmt = select(Org).where(Org.deleted_at.is_(None))
    if principal.kind == "api_key":
        stmt = stmt.where(Org.id == principal.org_id)
        rows, cursor = await paginate(session, stmt, Org, page)
        return Page(data=[service.org_out(o, None) for o in rows], next_cursor=cursor)
    # Not a tenancy filter: the orgs this user is a member of, across orgs, by their memberships.
    stmt = stmt.join(Membership, Membership.org_id == Org.id).where(
        Membership.user_id == principal.user_id
    )
    rows, cursor = await paginate(session, stmt, Org, page)
    rows_roles = await session.execute(
        select(Membership.org_id, Membership.role).where(
            Membership.user_id == principal.user_id,
            Membership.org_id.in_([o.id for o in rows]),
        )
    )
    roles = {org_id: role for org_id, role in rows_roles}
    return Page(data=[service.org_out(o, roles[o.id]) for o in rows], next_cursor=cursor)


@orgs.post("", status_code=201, response_model=schemas.Org, dependencies=[Depends(require_session)])
async def create_org(
    body: schemas.OrgCreate, session: DbSession, principal: CurrentPrincipal
) -> schemas.Org:
    """Create a team org; you become its owner (signed-in users only)."""
    org = await service.create_team_org(session, principal, body.name)
    return service.org_out(org, "owner")


@orgs.get("/{id}", response_model=schemas.Org)
async def get_org(id: str, session: DbSession, principal: CurrentPrincipal) -> schemas.Org:
    """One org you belong to, with your role in it."""
    grant = await service.org_access(session, principal, id)
    return service.org_out(grant.org, grant.role)


@orgs.patch("/{id}", response_model=schemas.Org)
async def update_org(
    id: str, body: schemas.OrgUpdate, session: DbSession, principal: CurrentPrincipal
) -> schemas.Org:
    """Rename an org (admins and owners)."""
    grant = await service.org_access(session, principal, id)
    grant.require("admin")
    if body.name is not None:
        await service.rename_org(session, grant, body.name)
    return service.org_out(grant.org, grant.role)


async def _member_page(
    session: DbSession, principal: CurrentPrincipal, org_id: str, page: PageParams
) -> Page[schemas.Member]:
    grant = await service.org_access(session, principal, org_id)
    grant.require("read")
    stmt = owned(select(Membership), grant.org.id)
    rows, cursor = await paginate(session, stmt, Membership, page)
    users = await service.users_by_id(session, [m.user_id for m in rows])
    return Page(
        data=[service.member_out(m, users[m.user_id]) for m in rows if m.user_id in users],
        next_cursor=cursor,
    )


@orgs.get("/{id}/members", response_model=Page[schemas.Member])
async def list_org_members(
    id: str, session: DbSession, principal: CurrentPrincipal, page: Paging
) -> Page[schemas.Member]:
    """The org's members and their roles, newest first."""
    return await _member_page(session, principal, id, page)


# Members -----------------------------------------------------------------------------------


@members.get("", response_model=Page[schemas.Member])
async def list_members(
    org_id: str, session: DbSession, principal: CurrentPrincipal, page: Paging
) -> Page[schemas.Member]:
    """The org's members and their roles, newest first."""
    return await _member_page(session, principal, org_id, page)


@members.patch("/{user_id}", response_model=schemas.Member)
async def update_member(
    org_id: str,
    user_id: str,
    body: schemas.MemberUpdate,
    session: DbSession,
    principal: CurrentPrincipal,
) -> schemas.Member:
    """Change a member's role (admins; only owners grant or remove the owner role)."""
    grant = await service.org_access(session, principal, org_id)
    membership, user = await service.change_role(session, grant, user_id, body.role)
    return service.member_out(membership, user)


@members.delete("/{user_id}", status_code=204)
async def remove_member(
    org_id: str, user_id: str, session: DbSession, principal: CurrentPrincipal
) -> Response:
    """Remove a member (admins), or leave the org by naming yourself; the last owner stays."""
    grant = await service.org_access(session, principal, org_id)
    await service.remove_member(session, grant, user_id)
    return Response(status_code=204)


# Invitations -------------------------------------------------------------------------------


@invitations.post("", status_code=201, response_model=schemas.Invitation)
async def create_invitation(
    org_id: str,
    body: schemas.InvitationCreate,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> schemas.Invitation:
    """Invite someone by email to join the org with a role (admins); the link is emailed."""
    grant = await service.org_access(session, principal, org_id)
    inv = await service.invite(session, settings_of(request), grant, body.email, body.role)
    return service.invitation_out(inv)


@invitations.get("", response_model=Page[schemas.Invitation])
async def list_invitations(
    org_id: str, session: DbSession, principal: CurrentPrincipal, page: Paging
) -> Page[schemas.Invitation]:
    """The org's pending invitations, newest first (admins)."""
    grant = await service.org_access(session, principal, org_id)
    grant.require("admin")
    stmt = service.pending_invitations(grant.org.id)
    rows, cursor = await paginate(session, stmt, Invitation, page)
    return Page(data=[service.invitation_out(i) for i in rows], next_cursor=cursor)


@invitations.delete("/{inv_id}", status_code=204)
async def revoke_invitation(
    org_id: str, inv_id: str, session: DbSession, principal: CurrentPrincipal
) -> Response:
    """Revoke an invitation; its link stops working (admins)."""
    grant = await service.org_access(session, principal, org_id)
    await service.revoke_invitation(session, grant, inv_id)
    return Response(status_code=204)


@invitation_links.get("/{token}", response_model=schemas.InvitationPreview)
async def get_invitation(
    token: str, session: DbSession, principal: CurrentPrincipal
) -> schemas.InvitationPreview:
    """What an emailed invitation offers: the org, the role, who sent it and when it expires."""
    return await service.preview_invitation(session, token)


@invitation_links.post("/{token}/accept", response_model=schemas.Org)
async def accept_invitation(
    token: str, session: DbSession, principal: CurrentPrincipal
) -> schemas.Org:
    """Join the org an invitation names; your account's email must be the invited address."""
    org, role = await service.accept_invitation(session, principal, token)
    return service.org_out(org, role)


# IP allowlist (the acting org) -------------------------------------------------------------


@allowlist.get("", response_model=Page[schemas.AllowlistEntry])
async def list_ip_allowlist(
    session: DbSession, principal: OrgAdmin, page: Paging
) -> Page[schemas.AllowlistEntry]:
    """The acting org's IP allowlist (admins); an empty list allows every address."""
    stmt = owned(select(IpAllowlistEntry), principal)
    rows, cursor = await paginate(session, stmt, IpAllowlistEntry, page)
    return Page(data=[service.allowlist_out(e) for e in rows], next_cursor=cursor)


@allowlist.post("", status_code=201, response_model=schemas.AllowlistEntry)
async def add_ip_allowlist_entry(
    body: schemas.AllowlistEntryCreate, session: DbSession, principal: OrgAdmin
) -> schemas.AllowlistEntry:
    """Allow an IPv4 or IPv6 range for the acting org (admins); refuses to lock you out."""
    entry = await service.add_allowlist_entry(session, principal, body)
    return service.allowlist_out(entry)


@allowlist.delete("/{entry_id}", status_code=204)
async def remove_ip_allowlist_entry(
    entry_id: str,
    session: DbSession,
    principal: OrgAdmin,
    confirm_lockout: Annotated[
        bool, Query(description="Remove it even though your address would no longer be allowed.")
    ] = False,
) -> Response:
    """Remove an entry from the acting org's IP allowlist (admins)."""
    await service.remove_allowlist_entry(session, principal, entry_id, confirm_lockout)
    return Response(status_code=204)


# The audit log (tag audit) -------------------------------------------------------------------


@audit.get("", response_model=Page[schemas.AuditEventOut])
async def list_audit_events(
    session: DbSession,
    principal: OrgAdmin,
    page: Paging,
    actor: Annotated[str | None, Query(description="Actor id (user or API key).")] = None,
    action: Annotated[
        str | None, Query(description="Exact action, or a prefix ending in `.`")
    ] = None,
    target: Annotated[str | None, Query(description="Target id.")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[schemas.AuditEventOut]:
    """Security events for the caller's org, newest first (org admins)."""
    stmt = service.audit_events(principal, service.AuditFilter(actor, action, target, since, until))
    rows, cursor = await paginate(session, stmt, AuditEvent, page)
    return Page(data=[service.audit_event_out(e) for e in rows], next_cursor=cursor)


# The audit log first: app.py listed it before the org routers, and the OpenAPI paths keep
# that order.
routers: list[APIRouter] = [audit, allowlist, orgs, members, invitations, invitation_links]
