"""SMS and email factors: codes through the Twilio Messages API (a local server) and the email
outbox; hashed, single use, attempt-limited. Backup codes and sudo-gated factor routes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from forkyard.identity.models import MfaCode
from tests.fakes.identity_helpers import (
    enroll_totp,
    last_email_code,
    last_sms_code,
    oathtool,
    password_step,
    sudo,
)
from tests.fakes.twilio_server import TwilioServer
from tests.helpers import error_code, make_account

PHONE = "+14155550100"


@pytest.fixture
def twilio(settings):
    with TwilioServer() as server:
        settings.twilio_account_sid = server.account_sid
        settings.twilio_auth_token = server.auth_token
        settings.twilio_from_number = "+15005550006"
        settings.twilio_api_base_url = server.url
        yield server


def _twilio_code(server: TwilioServer, to: str) -> str:
    import re

    body = next(m["body"] for m in reversed(server.messages) if m["to"] == to)
    match = re.search(r"\b(\d{6})\b", body)
    assert match
    return match.group(1)


async def test_sms_factor_through_twilio_and_sign_in(client, new_client, run_jobs, twilio, db):
    await make_account(client, "sms@example.com")
    bad = await client.post("/v1/auth/mfa/sms/enroll", json={"phone": "0155 555"})
    assert bad.status_code == 422
    r = await client.post("/v1/auth/mfa/sms/enroll", json={"phone": PHONE})
    assert r.status_code == 200, r.text
    assert PHONE not in r.text  # masked
    await run_jobs()
    code = _twilio_code(twilio, PHONE)
    assert twilio.messages[-1]["from"] == "+15005550006"
    async with db.transaction() as s:
        rows = list((await s.execute(select(MfaCode))).scalars())
    assert rows and all(code not in r.code_hash for r in rows)
    r = await client.post("/v1/auth/mfa/sms/verify", json={"code": code})
    assert r.status_code == 201, r.text
    # Single use.
    again = await client.post("/v1/auth/mfa/sms/verify", json={"code": code})
    assert again.status_code == 404

    browser = new_client("10.2.0.2")
    token = (await password_step(browser, "sms@example.com"))["challenge_token"]
    r = await browser.post(
        "/v1/auth/login/mfa/send-code", json={"challenge_token": token, "factor": "sms"}
    )
    assert r.status_code == 200, r.text
    await run_jobs()
    login_code = _twilio_code(twilio, PHONE)
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": login_code}
    )
    assert r.status_code == 200, r.text


async def test_sms_outbox_when_twilio_is_not_configured(client, run_jobs, settings):
    await make_account(client, "smsbox@example.com")
    assert (await client.post("/v1/auth/mfa/sms/enroll", json={"phone": PHONE})).status_code == 200
    await run_jobs()
    code = last_sms_code(settings, PHONE)
    assert (await client.post("/v1/auth/mfa/sms/verify", json={"code": code})).status_code == 201


async def test_email_code_is_attempt_limited(client, new_client, run_jobs, settings):
    await make_account(client, "mail@example.com")
    assert (await client.post("/v1/auth/mfa/email/enroll")).status_code == 200
    await run_jobs()
    code = last_email_code(settings, "mail@example.com")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = await client.post("/v1/auth/mfa/email/verify", json={"code": wrong})
        assert r.status_code == 400 and error_code(r) == "invalid_code"
    # The code is dead after the last allowed attempt, even when right.
    r = await client.post("/v1/auth/mfa/email/verify", json={"code": code})
    assert r.status_code == 400
    # A fresh enrollment sends a fresh code that works.
    assert (await client.post("/v1/auth/mfa/email/enroll")).status_code == 200
    await run_jobs()
    code = last_email_code(settings, "mail@example.com")
    assert (await client.post("/v1/auth/mfa/email/verify", json={"code": code})).status_code == 201

    browser = new_client("10.2.0.3")
    token = (await password_step(browser, "mail@example.com"))["challenge_token"]
    r = await browser.post(
        "/v1/auth/login/mfa/send-code", json={"challenge_token": token, "factor": "email"}
    )
    assert r.status_code == 200
    await run_jobs()
    login_code = last_email_code(settings, "mail@example.com")
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": login_code}
    )
    assert r.status_code == 200, r.text


async def test_backup_codes_are_sudo_gated_and_single_use(client, new_client):
    await make_account(client, "backup@example.com")
    r = await client.post("/v1/auth/mfa/backup-codes/regenerate")
    assert r.status_code == 403 and error_code(r) == "sudo_required"
    await sudo(client)
    r = await client.post("/v1/auth/mfa/backup-codes/regenerate")
    assert r.status_code == 409 and error_code(r) == "mfa_not_enabled"
    secret = await enroll_totp(client)
    r = await client.post("/v1/auth/mfa/backup-codes/regenerate")
    assert r.status_code == 200
    codes = r.json()["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10

    browser = new_client("10.2.0.4")
    challenge = await password_step(browser, "backup@example.com")
    assert challenge["factors"] == ["totp", "backup_code"]
    r = await browser.post(
        "/v1/auth/login/mfa",
        json={"challenge_token": challenge["challenge_token"], "code": codes[0]},
    )
    assert r.status_code == 200, r.text
    other = new_client("10.2.0.5")
    token = (await password_step(other, "backup@example.com"))["challenge_token"]
    r = await other.post("/v1/auth/login/mfa", json={"challenge_token": token, "code": codes[0]})
    assert r.status_code == 400 and error_code(r) == "invalid_code"
    r = await other.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": oathtool(secret, 30)}
    )
    assert r.status_code == 200
    assert (await client.get("/v1/auth/mfa/factors")).json()["backup_codes_remaining"] == 9


async def test_factor_removal_is_sudo_gated(client, new_client):
    await make_account(client, "remove@example.com")
    await enroll_totp(client)
    factor_id = (await client.get("/v1/auth/mfa/factors")).json()["data"][0]["id"]
    r = await client.post(f"/v1/auth/mfa/factors/{factor_id}/remove")
    assert r.status_code == 403 and error_code(r) == "sudo_required"
    await sudo(client)
    r = await client.post("/v1/auth/mfa/factors/mfa_nope/remove")
    assert r.status_code == 404
    r = await client.post(f"/v1/auth/mfa/factors/{factor_id}/remove")
    assert r.status_code == 204
    # Without factors, a password alone signs in again.
    r = await new_client("10.2.0.6").post(
        "/v1/auth/login",
        json={"email": "remove@example.com", "password": "correct horse battery staple 42"},
    )
    assert r.json()["mfa_required"] is False and "fy_access" in r.cookies
