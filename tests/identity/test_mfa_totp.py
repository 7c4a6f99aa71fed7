"""TOTP enrollment and sign-in with codes from an independent implementation (oathtool);
replays, challenge expiry and attempt limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from forkyard.identity.models import LoginChallenge, MfaFactor
from forkyard.kit.clock import clock
from tests.fakes.identity_helpers import enroll_totp, oathtool, password_step
from tests.helpers import error_code, make_account


@pytest.fixture(autouse=True)
def frozen_time() -> None:
    """A code is for a 30-second step: a slow run must not cross into the next step between
    using a code and replaying it (time moves only with clock.advance here)."""
    clock.freeze()


async def test_totp_enrollment_returns_uri_and_qr_and_encrypts_the_secret(client, db):
    await make_account(client, "totp1@example.com")
    r = await client.post("/v1/auth/mfa/totp/enroll/begin")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert body["qr_svg"].lstrip().startswith("<svg")
    wrong = await client.post("/v1/auth/mfa/totp/enroll/finish", json={"code": "000000"})
    assert wrong.status_code == 400 and error_code(wrong) == "invalid_code"
    code = oathtool(body["secret"])
    r = await client.post("/v1/auth/mfa/totp/enroll/finish", json={"code": code})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "totp"
    async with db.transaction() as s:
        factor = (await s.execute(select(MfaFactor))).scalar_one()
    assert factor.secret_enc and body["secret"] not in factor.secret_enc
    listed = (await client.get("/v1/auth/mfa/factors")).json()
    assert [f["kind"] for f in listed["data"]] == ["totp"]


async def test_login_needs_the_second_factor_and_codes_work_once(client, new_client, db):
    await make_account(client, "totp2@example.com")
    secret = await enroll_totp(client)
    browser = new_client("10.0.0.2")
    challenge = await password_step(browser, "totp2@example.com")
    assert challenge["factors"] == ["totp"]
    async with db.transaction() as s:
        row = (await s.execute(select(LoginChallenge))).scalar_one()
    assert row.token_hash != challenge["challenge_token"]  # only a hash is stored
    state = await browser.get(
        "/v1/auth/login/mfa/state", params={"challenge_token": challenge["challenge_token"]}
    )
    assert state.status_code == 200 and state.json()["attempts_left"] == 5
    # Not signed in yet.
    assert (await browser.get("/v1/auth/me")).status_code == 401
    # The enrollment code (this time step) was already used: a replay.
    replay = await browser.post(
        "/v1/auth/login/mfa",
        json={"challenge_token": challenge["challenge_token"], "code": oathtool(secret)},
    )
    assert replay.status_code == 400 and error_code(replay) == "invalid_code"
    code = oathtool(secret, 30)
    ok = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": code}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["user"]["email"] == "totp2@example.com"
    assert (await browser.get("/v1/auth/me")).status_code == 200
    # The challenge is spent, and the code cannot be replayed on a new one.
    again = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": code}
    )
    assert again.status_code == 401 and error_code(again) == "mfa_challenge_invalid"
    fresh = await password_step(new_client("10.0.0.3"), "totp2@example.com")
    replay2 = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": fresh["challenge_token"], "code": code}
    )
    assert replay2.status_code == 400


async def test_challenge_attempt_limit(client, new_client):
    await make_account(client, "totp3@example.com")
    secret = await enroll_totp(client)
    browser = new_client("10.0.0.4")
    token = (await password_step(browser, "totp3@example.com"))["challenge_token"]
    for left in (4, 3, 2, 1, 0):
        r = await browser.post(
            "/v1/auth/login/mfa", json={"challenge_token": token, "code": "123456"}
        )
        assert r.status_code == 400
        assert r.json()["error"]["details"]["attempts_left"] == left
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": token, "code": oathtool(secret, 30)}
    )
    assert r.status_code == 401 and error_code(r) == "mfa_challenge_invalid"


async def test_challenge_expires(client, new_client):
    await make_account(client, "totp4@example.com")
    secret = await enroll_totp(client)
    browser = new_client("10.0.0.5")
    token = (await password_step(browser, "totp4@example.com"))["challenge_token"]
    clock.advance(timedelta(minutes=11))
    r = await browser.get("/v1/auth/login/mfa/state", params={"challenge_token": token})
    assert r.status_code == 401 and error_code(r) == "mfa_challenge_invalid"
    clock.reset()
    r = await browser.post(
        "/v1/auth/login/mfa", json={"challenge_token": "x" * 43, "code": oathtool(secret, 30)}
    )
    assert r.status_code == 401


async def test_wrong_password_never_reaches_the_challenge(client, new_client):
    await make_account(client, "totp5@example.com")
    await enroll_totp(client)
    r = await new_client("10.0.0.6").post(
        "/v1/auth/login", json={"email": "totp5@example.com", "password": "wrong password 123"}
    )
    assert r.status_code == 401 and "challenge_token" not in r.text
