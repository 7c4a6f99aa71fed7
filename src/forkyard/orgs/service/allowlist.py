"""The acting org's IP allowlist: adding and removing ranges, refusing a change that would lock
the caller out unless they confirm it. get_principal enforces the list (identity.deps)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.db.tenancy import get_owned, owned
from forkyard.identity.deps import ip_in_allowlist
from forkyard.identity.principal import Principal
from forkyard.orgs import schemas
from forkyard.orgs.errors import AllowlistEntryExists, AllowlistFull, WouldLockOut
from forkyard.tenants.models import IpAllowlistEntry

MAX_ALLOWLIST_ENTRIES = 200


def allowlist_out(entry: IpAllowlistEntry) -> schemas.AllowlistEntry:
    return schemas.AllowlistEntry(
        id=entry.id,
        cidr=entry.cidr,
        description=entry.description,
        created_by=entry.created_by,
        created_at=entry.created_at,
    )


async def _allowlist_cidrs(session: AsyncSession, org_id: str) -> list[tuple[str, str]]:
    """The entries, locked: two changes at once must each see the other's result."""
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
