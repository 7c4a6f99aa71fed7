"""Who may act in an org named by the path (`org_access` and its grant), and the org itself:
creating a team org and renaming one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.identity.deps import IpNotAllowed, ip_in_allowlist
from forkyard.identity.errors import CookieSessionRequired
from forkyard.identity.principal import ROLE_SCOPES, Principal
from forkyard.kit.errors import Forbidden, NotFound
from forkyard.kit.ids import has_prefix
from forkyard.orgs import schemas
from forkyard.orgs.errors import OwnerRequired
from forkyard.tenants.models import Membership, Org
from forkyard.tenants.queries import allowlist_of, role_in


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
        # Not a row lookup but the key's one org: the org row is in hand, and has no org_id.
        if principal.org_id != org.id:
            raise NotFound.of("Org", org_id)
        grant = OrgGrant(org, None, principal.scopes, principal)
    else:
        role = await role_in(session, org.id, principal.user_id) if principal.user_id else None
        if role is None:
            raise NotFound.of("Org", org_id)
        grant = OrgGrant(org, role, ROLE_SCOPES[role], principal)
    if org.id != principal.org_id:
        # get_principal enforced the acting org's allowlist; the path may name another org.
        cidrs = await allowlist_of(session, org.id)
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
