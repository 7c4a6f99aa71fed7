from __future__ import annotations

from tests.helpers import PASSWORD, error_code, last_link, login, outbox, signup


async def test_signup_sends_verification_and_login_sets_cookies(client, settings, run_jobs):
    await signup(client, "ada@example.com")
    await run_jobs()
    token = last_link(settings, "ada@example.com")
    body = await login(client, "ada@example.com")
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["email_verified"] is False
    me = await client.get("/v1/auth/me")
    assert me.status_code == 200 and me.json()["id"] == body["user"]["id"]

    r = await client.get("/v1/auth/verify-email", params={"token": token})
    assert r.status_code == 200 and r.json()["verified"] is True
    assert (await client.get("/v1/auth/me")).json()["email_verified"] is True
    # single use
    again = await client.get("/v1/auth/verify-email", params={"token": token})
    assert again.status_code == 400 and error_code(again) == "invalid_token"


async def test_wrong_password_and_unknown_email_look_the_same(client):
    await signup(client, "bob@example.com")
    wrong = await client.post(
        "/v1/auth/login", json={"email": "bob@example.com", "password": "nope nope nope"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "nope nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


async def test_signup_with_taken_email_gives_same_answer(client, settings, run_jobs):
    await signup(client, "carol@example.com")
    r = await client.post(
        "/v1/auth/signup", json={"email": "carol@example.com", "password": PASSWORD, "name": "x"}
    )
    first = await client.post(
        "/v1/auth/signup", json={"email": "dave@example.com", "password": PASSWORD, "name": "x"}
    )
    assert r.status_code == first.status_code == 201
    assert r.json() == first.json()
    await run_jobs()
    subjects = [m["Subject"] for m in outbox(settings) if m["To"] == "carol@example.com"]
    assert "Someone tried to sign up with your address" in subjects


async def test_weak_and_common_passwords_refused(client):
    short = await client.post(
        "/v1/auth/signup", json={"email": "e@example.com", "password": "short", "name": "e"}
    )
    assert short.status_code == 422 and error_code(short) == "validation_failed"
    common = await client.post(
        "/v1/auth/signup",
        json={"email": "e@example.com", "password": "password123456", "name": "e"},
    )
    assert common.status_code == 422
    assert "common" in common.json()["error"]["message"]
