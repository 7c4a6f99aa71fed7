"""Recovery: the same answer for every address, the owner is told, a 24-hour cooldown on the
movable clock, then every factor removed and every session revoked."""

from __future__ import annotations

import re
from datetime import timedelta

from forkyard.kit.clock import clock
from tests.fakes.identity_helpers import enroll_totp
from tests.helpers import PASSWORD, error_code, make_account, outbox


def _recovery_token(settings, to: str) -> str:
    for msg in reversed(outbox(settings)):
        if str(msg["To"]) == to and "recovery link" in str(msg["Subject"]):
            match = re.search(r"token:\n([A-Za-z0-9_\-]+)", msg.get_content())
            assert match
            return match.group(1)
    raise AssertionError("no recovery email")


async def test_recovery_waits_for_the_cooldown(client, new_client, run_jobs, settings):
    await make_account(client, "rec@example.com")
    await enroll_totp(client)
    anon = new_client("10.4.0.2")
    known = await anon.post("/v1/auth/recovery/request", json={"email": "rec@example.com"})
    unknown = await anon.post("/v1/auth/recovery/request", json={"email": "ghost@example.com"})
    assert known.status_code == unknown.status_code == 200 and known.json() == unknown.json()
    await run_jobs()
    subjects = [str(m["Subject"]) for m in outbox(settings) if str(m["To"]) == "rec@example.com"]
    assert any("asked to recover" in s for s in subjects)  # the owner is told
    token = _recovery_token(settings, "rec@example.com")

    early = await anon.post("/v1/auth/recovery/complete", json={"token": token})
    assert early.status_code == 409 and error_code(early) == "recovery_cooldown"
    clock.advance(timedelta(hours=23, minutes=59))
    assert (await anon.post("/v1/auth/recovery/complete", json={"token": token})).status_code == 409
    clock.advance(timedelta(minutes=2))
    assert (await client.get("/v1/auth/me")).status_code == 401  # access cookie aged out anyway
    r = await anon.post("/v1/auth/recovery/complete", json={"token": token})
    assert r.status_code == 200, r.text
    again = await anon.post("/v1/auth/recovery/complete", json={"token": token})
    assert again.status_code == 400
    # Factors are gone: the password alone signs in.
    r = await new_client("10.4.0.3").post(
        "/v1/auth/login", json={"email": "rec@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200 and r.json()["mfa_required"] is False


async def test_recovery_revokes_sessions(client, new_client, run_jobs, settings):
    await make_account(client, "rec2@example.com")
    anon = new_client("10.4.0.4")
    await anon.post("/v1/auth/recovery/request", json={"email": "rec2@example.com"})
    await run_jobs()
    token = _recovery_token(settings, "rec2@example.com")
    refresh_before = client.cookies.get("fy_refresh")
    clock.advance(timedelta(hours=24, seconds=1))
    assert (await anon.post("/v1/auth/recovery/complete", json={"token": token})).status_code == 200
    r = await client.post("/v1/auth/refresh", headers={"Origin": "http://testserver"})
    assert refresh_before and r.status_code == 401
