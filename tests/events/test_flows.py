"""Real flows through the API emit the facts they cause, and subscribers react to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from forkyard.compute.models import Instance
from forkyard.events.models import EventRecord
from forkyard.identity.models import User
from tests.compute.conftest import create_running, wait_status
from tests.fakes.identity_helpers import sudo
from tests.helpers import make_account, make_api_key


async def events(db: Any, *types: str) -> list[EventRecord]:
    async with db.transaction() as s:
        stmt = select(EventRecord).order_by(EventRecord.created_at, EventRecord.id)
        if types:
            stmt = stmt.where(EventRecord.type.in_(types))
        return list((await s.execute(stmt)).scalars())


async def test_sign_in_and_api_keys_emit_their_events(client, db):
    account = await make_account(client, "keys@example.com")
    [signed_in] = await events(db, "user.signed_in")
    assert (signed_in.resource_id, signed_in.org_id) == (account.user_id, account.org_id)
    assert signed_in.payload["method"] == "password" and signed_in.payload["mfa"] is False
    await make_api_key(client, name="ci")
    key_id = (await client.get("/v1/api-keys")).json()["data"][0]["id"]
    assert (await client.delete(f"/v1/api-keys/{key_id}")).status_code == 204
    keys = await events(db, "api_key.created", "api_key.revoked")
    assert [(e.type, e.resource_id) for e in keys] == [
        ("api_key.created", key_id),
        ("api_key.revoked", key_id),
    ]
    assert keys[0].payload == {"name": "ci", "scopes": ["read", "write"]}
    assert (keys[0].actor_type, keys[0].actor_id) == ("user", account.user_id)
    # The key's secret appears nowhere in the event.
    assert "fy_" not in str(keys[0].payload)


async def test_inviting_and_joining_emit_invitation_and_member_events(orgs, db):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", role="member")
    r = await ada.client.delete(f"/v1/orgs/{team.id}/members/{bob.user_id}")
    assert r.status_code == 204, r.text
    facts = await events(
        db, "invitation.created", "invitation.accepted", "member.added", "member.removed"
    )
    assert [e.type for e in facts] == [
        "invitation.created",
        "invitation.accepted",
        "member.added",
        "member.removed",
    ]
    assert all(e.org_id == team.id for e in facts)
    assert facts[0].payload["email"] == "bob@example.com" and facts[0].actor_id == ada.user_id
    assert facts[2].resource_id == bob.user_id and facts[2].payload["role"] == "member"
    assert facts[3].payload["left"] is False
    # The invitation's token travels only in its email, never in an event.
    assert "token" not in str(facts[0].payload)


async def test_account_deletion_is_an_event_compute_reacts_to(client, db, run_jobs):
    """compute's subscriber to user.deleted queues the personal org's instances for deletion
    (an instance never placed on a server is destroyed without one)."""
    account = await make_account(client, "leaving@example.com")
    async with db.transaction() as s:
        user = await s.get(User, account.user_id)
        assert user is not None
        instance = Instance(
            org_id=account.org_id,
            created_by=account.user_id,
            name="left-behind",
            status="stopped",
            server_id=None,
            image="default",
            vcpus=1.0,
            memory_mb=256,
            disk_mb=256,
            env={},
            labels={},
            setup_commands=[],
            setup_done=True,
            last_activity_at=user.created_at,
        )
        s.add(instance)
    await sudo(client)
    assert (await client.delete("/v1/auth/me")).status_code == 204
    async with db.transaction() as s:
        still = await s.get(Instance, instance.id)
        assert still is not None and still.status == "stopped"  # the subscriber has not run yet
    await run_jobs()
    async with db.transaction() as s:
        assert await s.get(Instance, instance.id) is None
    facts = await events(db, "user.deleted", "instance.deleted")
    assert [(e.type, e.resource_id) for e in facts] == [
        ("user.deleted", account.user_id),
        ("instance.deleted", instance.id),
    ]
    assert facts[1].payload["status_reason"] == "account_deleted"


async def test_an_instance_life_emits_its_events(platform, db):
    api = platform.api
    inst = await create_running(api)
    r = await api.post(f"/v1/instances/{inst['id']}/checkpoints", json={"name": "c1"})
    assert r.status_code == 201, r.text
    r = await api.post(f"/v1/instances/{inst['id']}/fork", json={"count": 1})
    assert r.status_code == 201, r.text
    child = r.json()["children"][0]["instance"]["id"]
    for iid in (child, inst["id"]):
        assert (await api.delete(f"/v1/instances/{iid}")).status_code in (200, 202)
        await wait_status(api, iid, "gone")
    mine = [e for e in await events(db) if e.org_id == platform.org_id]
    of_parent = [e.type for e in mine if e.resource_id == inst["id"]]
    assert of_parent == [
        "instance.created",
        "instance.running",
        "instance.forked",
        "instance.deleted",
    ]
    of_child = [e.type for e in mine if e.resource_id == child]
    assert of_child == ["instance.created", "instance.running", "instance.deleted"]
    [ckpt] = [e for e in mine if e.type == "checkpoint.created"]
    assert ckpt.payload["instance_id"] == inst["id"] and ckpt.payload["name"] == "c1"
    forked = next(e for e in mine if e.type == "instance.forked")
    assert forked.payload["children"] == [child]
