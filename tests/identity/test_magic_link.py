"""Magic links: the same answer for every address, single use, short-lived, MFA still applies."""

from __future__ import annotations

from datetime import timedelta

from forkyard.kit.clock import clock
from tests.fakes.identity_helpers import enroll_totp, oathtool
from tests.helpers import error_code, last_link, make_account, outbox, signup

PATH = "/v1/auth/login/magic-link"


async def test_magic_link_signs_in_once(client, new_client, run_jobs, settings):
    await signup(client, "ml@example.com")
    known = await client.post(f"{PATH}/request", json={"email": "ml@example.com"})
    unknown = await client.post(f"{PATH}/request", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    await run_jobs()
    assert not [m for m in outbox(settings) if str(m["To"]) == "nobody@example.com"]
    token = last_link(settings, "ml@example.com", r"consume\?token=([A-Za-z0-9_\-]+)")
    browser = new_client("10.3.0.2")
    r = await browser.get(f"{PATH}/consume", params={"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email_verified"] is True and "fy_access" in r.cookies
    again = await new_client("10.3.0.3").get(f"{PATH}/consume", params={"token": token})
    assert again.status_code == 400 and error_code(again) == "invalid_token"


async def test_magic_link_expires(client, run_jobs, settings):
    await signup(client, "ml2@example.com")
    await client.post(f"{PATH}/request", json={"email": "ml2@example.com"})
    await run_jobs()
    token = last_link(settings, "ml2@example.com", r"consume\?token=([A-Za-z0-9_\-]+)")
    clock.advance(timedelta(minutes=16))
    r = await client.get(f"{PATH}/consume", params={"token": token})
    assert r.status_code == 400


async def test_magic_link_still_needs_the_second_factor(client, new_client, run_jobs, settings):
    # Verified: on an unverified account the link would reset everything (test_address_claim).
    await make_account(client, "ml3@example.com", run_jobs, settings, verify=True)
    secret = await enroll_totp(client)
    browser = new_client("10.3.0.4")
    await browser.post(f"{PATH}/request", json={"email": "ml3@example.com"})
    await run_jobs()
    token = last_link(settings, "ml3@example.com", r"consume\?token=([A-Za-z0-9_\-]+)")
    r = await browser.get(f"{PATH}/consume", params={"token": token})
    assert r.status_code == 200 and r.json()["mfa_required"] is True
    assert "fy_access" not in r.cookies
    r = await browser.post(
        "/v1/auth/login/mfa",
        json={"challenge_token": r.json()["challenge_token"], "code": oathtool(secret, 30)},
    )
    assert r.status_code == 200, r.text
