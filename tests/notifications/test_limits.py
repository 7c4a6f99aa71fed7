"""A limit nearly reached: the change that takes an org's use of a limit past 80% emits
quota.nearly_reached, and the org's owners and admins (not its members, not another org's
people) get one notice, by the channels they chose, at most once a day per limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select

from forkyard.compute.models import Instance
from forkyard.compute.quotas import check_quota
from forkyard.events.models import EventRecord
from forkyard.kit.clock import clock
from forkyard.notifications.models import Notification
from tests.compute.factories import make_instance, make_server
from tests.notifications.test_notifications import mails_to
from tests.orgs.conftest import Orgs

SUBJECT = "Forkyard: Acme is near its instances limit"


async def limit_notes(client: AsyncClient) -> list[dict[str, Any]]:
    """The limits notices (joining the team brought an invitation notice too)."""
    notes = (await client.get("/v1/notifications")).json()["data"]
    return [n for n in notes if n["category"] == "limits"]


def limit_mails(settings: Any, email: str) -> list[str]:
    return [m for m in mails_to(settings, email) if " limit" in m]


async def test_owners_and_admins_hear_of_a_limit_nearly_reached_once(
    new_client, db, settings, run_jobs
):
    orgs = Orgs(new_client, run_jobs, settings)
    owner = await orgs.person("owner@example.com")
    team = await orgs.team(owner)
    admin = await orgs.join(team, "admin@example.com", role="admin")
    member = await orgs.join(team, "member@example.com")
    outsider = await orgs.person("outsider@example.com", ip="10.8.0.9")
    r = await admin.client.put(
        "/v1/notifications/settings",
        json={"categories": {"limits": {"in_app": True, "email": False}}},
    )
    assert r.status_code == 200, r.text
    limits = settings.model_copy(update={"max_instances_per_org": 5})

    async def create(org_id: str) -> None:
        """What a create does with the quota: check, then the instance counts."""
        async with db.transaction() as s:
            await check_quota(s, limits, org_id, vcpus=1, memory_mb=256)
            await make_instance(s, org_id, server, vcpus=1)

    async def nearly_events() -> list[EventRecord]:
        async with db.transaction() as s:
            rows = await s.execute(
                select(EventRecord).where(EventRecord.type == "quota.nearly_reached")
            )
            return list(rows.scalars())

    async with db.transaction() as s:
        server = await make_server(s, settings)
    for _ in range(3):  # up to 3 of 5: under the 80% mark
        await create(team.id)
    assert await nearly_events() == []
    await create(team.id)  # 4 of 5: crossed
    await create(team.id)  # 5 of 5: still over, no second event
    for _ in range(4):  # another org's use is its own
        await create(outsider.org_id)
    await run_jobs()

    events = await nearly_events()
    assert sorted((e.org_id, e.payload["in_use"]) for e in events) == sorted(
        [(team.id, 4), (outsider.org_id, 4)]
    )
    [event] = [e for e in events if e.org_id == team.id]
    assert event.payload == {"limit": "max_instances", "max": 5, "in_use": 4, "threshold_pct": 80}
    for person in (owner, admin):
        notes = await limit_notes(person.client)
        assert [(n["category"], n["kind"], n["org_id"]) for n in notes] == [
            ("limits", "quota.nearly_reached", team.id)
        ]
        assert notes[0]["data"] == {"limit": "max_instances", "max": 5, "in_use": 4}
    assert limit_mails(settings, owner.email) == [SUBJECT]
    assert limit_mails(settings, admin.email) == []  # email off for limits: in the app only
    # A member without the role, and the outsider whose own org is at 4 of 5 too but who is
    # told only of theirs (their personal org: they own it).
    assert await limit_notes(member.client) == []
    assert limit_mails(settings, member.email) == []
    outsider_notes = await limit_notes(outsider.client)
    assert [n["org_id"] for n in outsider_notes] == [outsider.org_id]

    # Back under the mark and over again within the day: an event, but no second notice.
    async with db.transaction() as s:
        await s.execute(
            Instance.__table__.update().where(Instance.org_id == team.id).values(status="deleting")
        )
    for _ in range(4):
        await create(team.id)
    await run_jobs()
    assert len(await nearly_events()) == 3  # team twice, outsider once
    assert len(await limit_notes(owner.client)) == 1

    # A day later the next crossing is news again.
    clock.advance(timedelta(days=1, minutes=1))
    async with db.transaction() as s:
        await s.execute(
            Instance.__table__.update().where(Instance.org_id == team.id).values(status="deleting")
        )
    for _ in range(4):
        await create(team.id)
    await run_jobs()
    # (Read from the table: a day on, the browsers' sessions have aged out.)
    async with db.transaction() as s:
        told = (
            await s.execute(
                select(Notification.user_id, func.count())
                .where(Notification.kind == "quota.nearly_reached", Notification.org_id == team.id)
                .group_by(Notification.user_id)
            )
        ).all()
        total = (
            await s.execute(
                select(func.count())
                .select_from(EventRecord)
                .where(EventRecord.type == "quota.nearly_reached")
            )
        ).scalar_one()
    assert sorted(told) == sorted([(owner.user_id, 2), (admin.user_id, 2)])
    assert limit_mails(settings, owner.email) == [SUBJECT, SUBJECT]
    assert limit_mails(settings, admin.email) == []
    assert total == 4
