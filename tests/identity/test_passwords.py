"""Forgot/reset password, password change and set-password."""

from __future__ import annotations

from datetime import timedelta

from forkyard.identity.models import ApiKey
from forkyard.identity.service import create_user
from forkyard.kit.clock import clock
from forkyard.kit.crypto import token_hash
from tests.helpers import PASSWORD, error_code, last_link, login, make_account, outbox

NEW = "a brand new passphrase 77"


async def test_forgot_password_answers_the_same_for_unknown_emails(client, settings, run_jobs):
    await make_account(client, "fp@example.com")
    known = await client.post("/v1/auth/forgot-password", json={"email": "fp@example.com"})
    unknown = await client.post("/v1/auth/forgot-password", json={"email": "nope@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    await run_jobs()
    assert [m["To"] for m in outbox(settings) if "Reset" in str(m["Subject"])] == ["fp@example.com"]


async def test_reset_flow_is_single_use_and_signs_everyone_out(
    client, new_client, settings, run_jobs
):
    await make_account(client, "reset@example.com")
    assert (await client.get("/v1/auth/me")).status_code == 200
    await client.post("/v1/auth/forgot-password", json={"email": "reset@example.com"})
    await run_jobs()
    token = last_link(settings, "reset@example.com")

    weak = await new_client().post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "short"}
    )
    # A refused password does not burn the token (the request rolled back).
    assert weak.status_code == 422
    r = await new_client().post(
        "/v1/auth/reset-password", json={"token": token, "new_password": NEW}
    )
    assert r.status_code == 200, r.text
    again = await new_client().post(
        "/v1/auth/reset-password", json={"token": token, "new_password": NEW + "x"}
    )
    assert again.status_code == 400 and error_code(again) == "invalid_token"

    assert (await client.get("/v1/auth/me")).status_code == 401  # old session revoked
    old = await new_client().post(
        "/v1/auth/login", json={"email": "reset@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    await login(new_client(), "reset@example.com", NEW)


async def test_reset_token_expires(client, new_client, settings, run_jobs):
    await make_account(client, "late@example.com")
    await client.post("/v1/auth/forgot-password", json={"email": "late@example.com"})
    await run_jobs()
    token = last_link(settings, "late@example.com")
    clock.advance(timedelta(seconds=settings.password_reset_ttl_s + 1))
    r = await new_client().post(
        "/v1/auth/reset-password", json={"token": token, "new_password": NEW}
    )
    assert r.status_code == 400 and error_code(r) == "invalid_token"


async def test_password_change(client, new_client, settings, run_jobs):
    await make_account(client, "chg@example.com")
    other = new_client("10.3.3.3")
    await login(other, "chg@example.com")
    wrong = await client.post(
        "/v1/auth/me/password", json={"current_password": "not it at all", "new_password": NEW}
    )
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    weak = await client.post(
        "/v1/auth/me/password", json={"current_password": PASSWORD, "new_password": "password1234"}
    )
    assert weak.status_code == 422
    r = await client.post(
        "/v1/auth/me/password", json={"current_password": PASSWORD, "new_password": NEW}
    )
    assert r.status_code == 200
    assert (await client.get("/v1/auth/me")).status_code == 200  # this session stays
    assert (await other.get("/v1/auth/me")).status_code == 401  # the others are out
    await login(new_client(), "chg@example.com", NEW)
    await run_jobs()
    assert any("password was changed" in str(m["Subject"]) for m in outbox(settings))


async def test_set_password_only_for_accounts_without_one(
    client, new_client, db, run_jobs, settings
):
    await make_account(client, "has@example.com")
    r = await client.post("/v1/auth/set-password", json={"new_password": NEW})
    assert r.status_code == 409 and error_code(r) == "password_already_set"

    # An account made without a password (as OAuth or a magic link would).
    secret = "fy_" + "s" * 40
    async with db.transaction() as session:
        user = await create_user(
            session, email="nopw@example.com", password=None, name="N", verified=True
        )
        assert user.personal_org_id
        session.add(
            ApiKey(
                org_id=user.personal_org_id,
                created_by=user.id,
                name="boot",
                prefix=secret[:10],
                key_hash=token_hash(secret),
                scopes=["read", "write", "account"],
            )
        )
    # A key, even one with the account scope, can never give the account a password: whoever
    # holds a leaked key would own the account.
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {secret}"
    assert (await bot.get("/v1/auth/me")).json()["has_password"] is False
    refused = await bot.post("/v1/auth/set-password", json={"new_password": NEW})
    assert refused.status_code == 403 and error_code(refused) == "cookie_session_required"

    # The owner, signed in by a magic link, can.
    browser = new_client("10.9.0.1")
    await browser.post("/v1/auth/login/magic-link/request", json={"email": "nopw@example.com"})
    await run_jobs()
    token = last_link(settings, "nopw@example.com", r"consume\?token=([A-Za-z0-9_\-]+)")
    r = await browser.get("/v1/auth/login/magic-link/consume", params={"token": token})
    assert r.status_code == 200, r.text
    browser.headers["Origin"] = "http://testserver"
    weak = await browser.post("/v1/auth/set-password", json={"new_password": "tiny"})
    assert weak.status_code == 422
    r = await browser.post("/v1/auth/set-password", json={"new_password": NEW})
    assert r.status_code == 200, r.text
    assert (await bot.get("/v1/auth/me")).json()["has_password"] is True
    await login(new_client(), "nopw@example.com", NEW)
    again = await browser.post("/v1/auth/set-password", json={"new_password": NEW + "2"})
    assert again.status_code == 409
