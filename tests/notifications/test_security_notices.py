"""Security notices from identity's events: a password change, a second factor added or removed
and backup codes replaced each tell the account's user once, in the app and by email, whatever
their settings say; nobody else hears of it, and the events carry no secret."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from forkyard.events.kernel import deliver
from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import clock
from forkyard.notifications.models import Notification
from tests.fakes.identity_helpers import enroll_totp, sudo
from tests.helpers import PASSWORD, last_link, login, make_account
from tests.identity.test_recovery import _recovery_token
from tests.notifications.test_notifications import mails_to

NEW = "a different long passphrase 77"
QUIET = {
    "categories": {
        name: {"in_app": False, "email": False}
        for name in ("instances", "limits", "org", "webhooks")
    }
}


async def test_password_and_factor_changes_make_security_notices(
    client, new_client, settings, run_jobs
):
    me = await make_account(client, "secure@example.com")
    other = await make_account(new_client("10.9.0.2"), "bystander@example.com")
    r = await client.put("/v1/notifications/settings", json=QUIET)
    assert r.status_code == 200, r.text
    await run_jobs()

    r = await client.post(
        "/v1/auth/me/password", json={"current_password": PASSWORD, "new_password": NEW}
    )
    assert r.status_code == 200, r.text
    await enroll_totp(client)
    await sudo(client, NEW)
    assert (await client.post("/v1/auth/mfa/backup-codes/regenerate")).status_code == 200
    factor_id = (await client.get("/v1/auth/mfa/factors")).json()["data"][0]["id"]
    assert (await client.post(f"/v1/auth/mfa/factors/{factor_id}/remove")).status_code == 204
    await run_jobs()
    await run_jobs()  # nothing new on a second pass

    notes = (await client.get("/v1/notifications")).json()["data"]
    assert [(n["category"], n["kind"]) for n in reversed(notes)] == [
        ("security", "user.password_changed"),
        ("security", "user.mfa_factor_added"),
        ("security", "user.backup_codes_regenerated"),
        ("security", "user.mfa_factor_removed"),
    ]
    assert "authenticator app" in notes[0]["body"]
    assert notes[0]["data"] == {"factor_id": factor_id, "kind": "totp", "reason": "removed"}
    mails = mails_to(settings, me.email)
    for subject in (
        "Forkyard: Your password was changed",
        "Forkyard: A second factor was added",
        "Forkyard: Your backup codes were replaced",
        "Forkyard: A second factor was removed",
    ):
        assert mails.count(subject) == 1, (subject, mails)
    # The bystander: no notice, no mail.
    assert (await other.client.get("/v1/notifications")).json()["data"] == []
    assert mails_to(settings, other.email) == []

    # The facts are the account's: in its personal org's events, with no secret in them.
    events = (await client.get("/v1/events", params={"limit": 100})).json()["data"]
    mine = {
        e["type"]: e
        for e in events
        if e["type"].startswith("user.") and e["type"] != "user.signed_in"
    }
    assert mine["user.password_changed"]["payload"] == {"how": "changed"}
    assert mine["user.mfa_factor_added"]["payload"] == {"factor_id": factor_id, "kind": "totp"}
    assert mine["user.backup_codes_regenerated"]["payload"] == {}
    assert {e["org_id"] for e in mine.values()} == {me.org_id}
    theirs = (await other.client.get("/v1/events", params={"limit": 100})).json()["data"]
    assert not [e for e in theirs if e["resource_id"] == me.user_id]


async def test_a_security_notice_is_made_once_when_its_job_runs_twice(
    client, db, settings, run_jobs
):
    me = await make_account(client, "twice-sec@example.com")
    r = await client.post(
        "/v1/auth/me/password", json={"current_password": PASSWORD, "new_password": NEW}
    )
    assert r.status_code == 200, r.text
    async with db.transaction() as s:
        job = (
            await s.execute(
                select(Job).where(
                    Job.payload["subscriber"].astext == "notifications.password_changed"
                )
            )
        ).scalar_one()
    for _ in range(2):
        async with db.transaction() as s:
            await deliver(JobContext(s, settings, job.id, 1), dict(job.payload))
    await run_jobs()  # and the worker's own run of that job: a third
    async with db.transaction() as s:
        rows = list(
            (
                await s.execute(
                    select(Notification).where(Notification.kind == "user.password_changed")
                )
            ).scalars()
        )
    assert [r.user_id for r in rows] == [me.user_id]
    assert mails_to(settings, me.email).count("Forkyard: Your password was changed") == 1


async def test_a_reset_and_a_recovery_make_security_notices(
    client, new_client, db, settings, run_jobs
):
    me = await make_account(client, "lost@example.com", run_jobs, settings, verify=True)
    anon = new_client("10.9.0.3")
    await anon.post("/v1/auth/forgot-password", json={"email": me.email})
    await run_jobs()
    r = await anon.post(
        "/v1/auth/reset-password",
        json={"token": last_link(settings, me.email), "new_password": NEW},
    )
    assert r.status_code == 200, r.text
    browser = new_client("10.9.0.4")
    await login(browser, me.email, NEW)
    await enroll_totp(browser)
    await anon.post("/v1/auth/recovery/request", json={"email": me.email})
    await run_jobs()
    token = _recovery_token(settings, me.email)
    clock.advance(timedelta(hours=24, seconds=1))
    r = await anon.post("/v1/auth/recovery/complete", json={"token": token})
    assert r.status_code == 200, r.text
    await run_jobs()

    async with db.transaction() as s:
        rows = (
            await s.execute(
                select(Notification.kind, Notification.category, Notification.data)
                .where(Notification.user_id == me.user_id)
                .order_by(Notification.id)
            )
        ).all()
    assert [(kind, cat) for kind, cat, _ in rows] == [
        ("user.password_changed", "security"),
        ("user.mfa_factor_added", "security"),
        ("user.mfa_factor_removed", "security"),
    ]
    assert rows[0][2] == {"how": "reset"}
    assert rows[2][2] == {"factor_id": None, "kind": None, "reason": "recovery"}
    mails = mails_to(settings, me.email)
    assert mails.count("Forkyard: Your password was reset") == 1
    assert mails.count("Forkyard: Your account was recovered") == 1
