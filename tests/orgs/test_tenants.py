"""The tenancy reads identity and orgs share (forkyard.tenants.queries), without HTTP or root:
a member's role and an org's allowlist are read within that org only, and the last-owner rule
refuses to leave an org without an owner."""

from __future__ import annotations

import pytest

from forkyard.db.engine import Database
from forkyard.tenants.errors import LastOwner
from forkyard.tenants.queries import allowlist_of, check_not_last_owner, lock_org, role_in
from tests.orgs.factories import make_allowlist_entry, make_member, make_org


async def test_role_and_allowlist_are_read_within_the_named_org_only(db: Database) -> None:
    async with db.transaction() as session:
        acme, zeta = await make_org(session, "acme"), await make_org(session, "zeta")
        ada = await make_member(session, acme, "ada@example.com", "admin")
        await make_allowlist_entry(session, acme, "192.0.2.0/24")
        await make_allowlist_entry(session, zeta, "198.51.100.0/24")

        assert await role_in(session, acme.id, ada.user_id) == "admin"
        # In an org she is not in she has no role, the same as for an org that does not exist.
        assert await role_in(session, zeta.id, ada.user_id) is None
        assert await role_in(session, "org_" + "0" * 26, ada.user_id) is None
        assert await allowlist_of(session, acme.id) == ["192.0.2.0/24"]
        assert await allowlist_of(session, zeta.id) == ["198.51.100.0/24"]


async def test_the_last_owner_is_refused_and_another_owner_lets_one_go(db: Database) -> None:
    async with db.transaction() as session:
        acme, zeta = await make_org(session, "acme"), await make_org(session, "zeta")
        ada = await make_member(session, acme, "ada@example.com", "owner")
        # An owner of another org counts for that org, not this one.
        await make_member(session, zeta, "zed@example.com", "owner")
        await lock_org(session, acme.id)
        with pytest.raises(LastOwner) as caught:
            await check_not_last_owner(session, ada)
        assert caught.value.status_code == 409
        assert caught.value.details == {"org_id": acme.id, "user_id": ada.user_id}

        await make_member(session, acme, "bob@example.com", "owner")
        await check_not_last_owner(session, ada)  # bob stays: ada may go
