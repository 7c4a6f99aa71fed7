"""Compute's rules at the service level, on a real migrated PostgreSQL and without a node or root:
quotas (an org's own live rows, nobody else's), placement (fresh active servers with room,
those holding an instance's layers first), tenancy of the instance lookup, and the create that
boots in its request (its creation committed first, a refused one leaving nothing)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from forkyard.compute.errors import NoCapacity
from forkyard.compute.instances import get_instance
from forkyard.compute.models import Instance
from forkyard.compute.quotas import check_disk, check_quota
from forkyard.compute.schemas import InstanceCreate
from forkyard.compute.servers import place
from forkyard.compute.service import create_and_boot
from forkyard.kit.errors import NotFound, QuotaExceeded
from forkyard.tasks import load_all_tasks
from tests.compute.factories import (
    make_instance,
    make_layer,
    make_org,
    make_server,
    principal_for,
)


async def test_quotas_count_the_orgs_live_rows_and_nobody_elses(db, settings):
    load_all_tasks()  # a check near a limit emits quota.nearly_reached
    limits = settings.model_copy(
        update={"max_instances_per_org": 2, "max_vcpus_per_org": 3, "max_disk_mb_per_org": 4096}
    )
    async with db.transaction() as session:
        server = await make_server(session, settings)
        full, empty = await make_org(session, "full"), await make_org(session, "empty")
        await make_instance(session, full, server, vcpus=1, disk_mb=1024)
        await make_instance(session, full, server, status="stopped", vcpus=1, disk_mb=1024)
        # Being deleted: no longer counted against anything.
        await make_instance(session, full, server, status="deleting", vcpus=8, disk_mb=9999)
        await make_layer(session, full, server, data_mb=1024)

        with pytest.raises(QuotaExceeded) as refused:
            await check_quota(session, limits, full, vcpus=1, memory_mb=256)
        assert refused.value.details["limit"] == "max_instances"
        assert refused.value.details["in_use"] == 2
        # Disk: two instance disks and a 1 GiB layer leave 1 GiB of the 4 GiB.
        await check_disk(session, limits, full, disk_mb=1024)
        with pytest.raises(QuotaExceeded) as refused:
            await check_disk(session, limits, full, disk_mb=1025)
        assert refused.value.details == {
            "limit": "max_disk_mb",
            "max": 4096,
            "in_use": 3072,
            "requested": 1025,
        }

        # The other org's usage is none of this org's: all of its limits are free.
        await check_quota(session, limits, empty, vcpus=1.5, memory_mb=256, count=2)
        await check_disk(session, limits, empty, disk_mb=4096)
        with pytest.raises(QuotaExceeded) as refused:
            await check_quota(session, limits, empty, vcpus=2, memory_mb=256, count=2)
        assert refused.value.details["limit"] == "max_vcpus"


async def test_placement_takes_a_fresh_active_server_with_room(db, settings):
    async with db.transaction() as session:
        org = await make_org(session)
        await make_server(session, settings, name="silent", silent_for_s=3600)
        await make_server(session, settings, name="draining", status="draining")
        full = await make_server(session, settings, name="full", slots=1)
        await make_instance(session, org, full, status="provisioning")
        roomy = await make_server(session, settings, name="roomy", slots=2)
        assert (await place(session, settings)).id == roomy.id

        # Two free slots on one, three on another: the roomier one, unless the other holds
        # the instance's layers (they would have to be copied otherwise).
        roomier = await make_server(session, settings, name="roomier", slots=3)
        assert (await place(session, settings)).id == roomier.id
        layer = await make_layer(session, org, roomy)
        assert (await place(session, settings, [layer.id])).id == roomy.id

        await make_instance(session, org, roomy)
        await make_instance(session, org, roomy)
        for _ in range(3):
            await make_instance(session, org, roomier)
        with pytest.raises(NoCapacity):
            await place(session, settings)


async def test_another_orgs_instance_is_404_and_its_row_is_never_locked(db, settings):
    async with db.transaction() as session:
        mine, theirs = await make_org(session, "mine"), await make_org(session, "theirs")
        instance = await make_instance(session, theirs, None)
    me = principal_for(mine)
    async with db.transaction() as session:
        for lock in (False, True):
            with pytest.raises(NotFound) as missing:
                await get_instance(session, me, instance.id, lock=lock)
            assert missing.value.code == "not_found"
        # Its owner may take the row lock while the failed lookup's transaction is still open:
        # the org filter is in the statement, so the lookup locked nothing.
        async with db.transaction() as owner_session:
            await owner_session.execute(text("SET LOCAL lock_timeout = '2s'"))
            got = await get_instance(owner_session, principal_for(theirs), instance.id, lock=True)
            assert got.id == instance.id


async def _instances(db, org_id: str) -> list[Instance]:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        rows = await session.execute(select(Instance).where(Instance.org_id == org_id))
        return list(rows.scalars())


async def test_create_and_boot_commits_the_creation_before_the_boot(db, settings):
    load_all_tasks()  # creating emits instance.created, whose subscribers must be known
    async with db.transaction() as session:
        await make_server(session, settings)  # its node is not answering
        org = await make_org(session)
    who = principal_for(org)
    body = InstanceCreate(memory_mb=256, disk_mb=256)

    instance, booted = await asyncio.wait_for(create_and_boot(db, settings, who, body), 30)
    # The node did not answer: no boot, the instance stays provisioning for the queued boot,
    # and its creation (and the audit record of it) is committed all the same.
    assert booted is False and instance.status == "provisioning"
    assert [i.id for i in await _instances(db, org)] == [instance.id]
    async with db.transaction() as session:
        audited = await session.scalar(
            text("SELECT count(*) FROM audit_events WHERE target_id = :id AND action = :a"),
            {"id": instance.id, "a": "instance.created"},
        )
        queued = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE name = 'instance.boot'")
        )
    assert audited == 1 and queued == 1

    # Refused before anything is made: nothing committed, nothing queued.
    limits = settings.model_copy(update={"max_instances_per_org": 1})
    with pytest.raises(QuotaExceeded):
        await create_and_boot(db, limits, who, body)
    assert [i.id for i in await _instances(db, org)] == [instance.id]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Instance)) == 1
