"""The tenancy helper, without HTTP: one org's rows are found, another's are a 404 and never
listed, and a caller with no org owns nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from forkyard.db.engine import Database
from forkyard.db.tenancy import get_owned, is_owned, owned
from forkyard.kit.errors import NotFound
from forkyard.tenants.models import IpAllowlistEntry
from tests.orgs.factories import make_allowlist_entry, make_org


@dataclass
class Caller:
    org_id: str | None


async def test_get_owned_finds_the_org_row_and_hides_another_orgs(db: Database) -> None:
    async with db.transaction() as session:
        mine, theirs = await make_org(session, "mine"), await make_org(session, "theirs")
        entry = await make_allowlist_entry(session, theirs)

        with pytest.raises(NotFound) as caught:
            await get_owned(session, IpAllowlistEntry, entry.id, Caller(mine.id), kind="Entry")
        assert caught.value.status_code == 404
        assert caught.value.details == {"id": entry.id}

        found = await get_owned(session, IpAllowlistEntry, entry.id, theirs.id, kind="Entry")
        assert found is entry
        assert await get_owned(
            session, IpAllowlistEntry, entry.id, Caller(theirs.id), kind="Entry", lock=True
        )
        # A malformed id, an unknown one and a caller without an org answer alike.
        for ident, caller in (
            ("nonsense", Caller(theirs.id)),
            ("ipa_" + "0" * 26, Caller(theirs.id)),
            (entry.id, Caller(None)),
        ):
            with pytest.raises(NotFound):
                await get_owned(session, IpAllowlistEntry, ident, caller, kind="Entry")


async def test_owned_lists_only_the_callers_org(db: Database) -> None:
    async with db.transaction() as session:
        mine, theirs = await make_org(session, "mine"), await make_org(session, "theirs")
        kept = await make_allowlist_entry(session, mine, "198.51.100.0/24")
        other = await make_allowlist_entry(session, theirs)

        rows = (await session.execute(owned(select(IpAllowlistEntry), Caller(mine.id)))).scalars()
        assert [r.id for r in rows] == [kept.id]
        cidrs = await session.execute(owned(select(IpAllowlistEntry.cidr), theirs.id))
        assert list(cidrs.scalars()) == [other.cidr]
        nobody = await session.execute(owned(select(IpAllowlistEntry), None))
        assert nobody.first() is None
        assert is_owned(kept, mine.id) and not is_owned(kept, theirs.id)
        assert not is_owned(kept, Caller(None))
