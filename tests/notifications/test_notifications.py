"""Notices from events: per-user channel settings honoured, security notices always sent,
each notice made once even when its job runs twice, and never to another org's people."""

from __future__ import annotations

from sqlalchemy import select

from forkyard.compute.events import InstanceError, InstanceStopped
from forkyard.events import emit
from forkyard.events.kernel import deliver
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext
from forkyard.notifications.models import Notification
from tests.helpers import PASSWORD, error_code, make_account, outbox


def failed(org_id: str, inst: str = "inst_x") -> InstanceError:
    return InstanceError(
        org_id=org_id, resource_id=inst, status="error", status_reason="boot_failed", server_id=None
    )


def mails_to(settings, email: str) -> list[str]:
    return [
        str(m["Subject"])
        for m in outbox(settings)
        if str(m["To"]) == email and str(m["Subject"]).startswith("Forkyard: ")
    ]


async def test_settings_are_honoured_per_channel(client, new_client, db, settings, run_jobs):
    me = await make_account(client, "n@example.com")
    other = await make_account(new_client(), "other@example.com")
    async with db.transaction() as s:
        await emit(s, failed(me.org_id, "inst_a"))
    await run_jobs()
    notes = (await client.get("/v1/notifications")).json()["data"]
    assert [(n["kind"], n["data"]["instance_id"]) for n in notes] == [("instance.error", "inst_a")]
    assert "Forkyard: Instance inst_a failed" in mails_to(settings, me.email)
    # The other org's person hears nothing of it.
    assert (await other.client.get("/v1/notifications")).json()["data"] == []
    assert mails_to(settings, other.email) == []

    r = await client.put(
        "/v1/notifications/settings",
        json={"categories": {"instances": {"in_app": True, "email": False}}},
    )
    assert r.status_code == 200, r.text
    cats = {c["category"]: c for c in r.json()["categories"]}
    assert (cats["instances"]["in_app"], cats["instances"]["email"]) == (True, False)
    async with db.transaction() as s:
        await emit(s, failed(me.org_id, "inst_b"))
        # Stopped by someone is not news; stopped for idleness is.
        await emit(
            s,
            InstanceStopped(
                org_id=me.org_id,
                resource_id="inst_c",
                status="stopped",
                status_reason="user",
                server_id=None,
            ),
        )
    await run_jobs()
    notes = (await client.get("/v1/notifications", params={"unread": True})).json()["data"]
    assert [n["data"]["instance_id"] for n in notes] == ["inst_b", "inst_a"]
    assert not any("inst_b" in m for m in mails_to(settings, me.email))

    await client.put(
        "/v1/notifications/settings",
        json={"categories": {"instances": {"in_app": False, "email": False}}},
    )
    async with db.transaction() as s:
        await emit(s, failed(me.org_id, "inst_d"))
    await run_jobs()
    assert len((await client.get("/v1/notifications")).json()["data"]) == 2

    r = await client.post(f"/v1/notifications/{notes[0]['id']}/read")
    assert r.status_code == 200 and r.json()["read_at"] is not None
    assert len((await client.get("/v1/notifications", params={"unread": True})).json()["data"]) == 1
    assert (await client.post("/v1/notifications/read-all")).json() == {"marked": 1}
    r = await other.client.post(f"/v1/notifications/{notes[1]['id']}/read")
    assert r.status_code == 404 and error_code(r) == "not_found"


async def test_security_notices_cannot_be_switched_off(client, new_client, settings, run_jobs):
    me = await make_account(client, "sec@example.com")
    r = await client.put(
        "/v1/notifications/settings",
        json={"categories": {"security": {"in_app": True, "email": False}}},
    )
    assert r.status_code == 422 and error_code(r) == "validation_failed"
    await run_jobs()
    # Signing in again from the same browser is not news; from a new one it is.
    same = new_client()
    same.headers["User-Agent"] = client.headers["User-Agent"]
    assert (
        await same.post("/v1/auth/login", json={"email": me.email, "password": PASSWORD})
    ).status_code == 200
    await run_jobs()
    assert (await client.get("/v1/notifications")).json()["data"] == []
    phone = new_client()
    phone.headers["User-Agent"] = "PhoneBrowser/1.0"
    r = await phone.post("/v1/auth/login", json={"email": me.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    await run_jobs()
    notes = (await client.get("/v1/notifications")).json()["data"]
    assert [(n["category"], n["kind"]) for n in notes] == [("security", "security.new_device")]
    assert "PhoneBrowser/1.0" in notes[0]["body"]
    assert "Forkyard: A sign-in from a new device" in mails_to(settings, me.email)


async def test_a_notice_is_made_once_when_its_job_runs_twice(client, db, settings):
    me = await make_account(client, "twice@example.com")
    async with db.transaction() as s:
        await emit(s, failed(me.org_id))
    async with db.transaction() as s:
        job = (
            await s.execute(
                select(Job).where(
                    Job.payload["subscriber"].astext == "notifications.instance_error"
                )
            )
        ).scalar_one()
    for _ in range(2):
        async with db.transaction() as s:
            await deliver(JobContext(s, settings, job.id, 1), dict(job.payload))
    async with db.transaction() as s:
        rows = list((await s.execute(select(Notification))).scalars())
    assert len(rows) == 1
    async with db.transaction() as s:
        mails = (await s.execute(select(Job).where(Job.name == "mail.send"))).scalars().all()
    assert len([m for m in mails if "failed" in m.payload["subject"]]) == 1
    assert rows[0].user_id == me.user_id
