"""Passkeys registered and used by a software authenticator; wrong origin, replayed counters."""

from __future__ import annotations

from tests.fakes.identity_helpers import password_step
from tests.fakes.webauthn_authenticator import SoftAuthenticator
from tests.helpers import error_code, make_account


async def _register(client, authenticator: SoftAuthenticator) -> None:
    r = await client.post("/v1/auth/mfa/webauthn/register/begin")
    assert r.status_code == 200, r.text
    begin = r.json()
    assert begin["options"]["rp"]["id"] == "localhost"
    credential = authenticator.create(begin["options"])
    r = await client.post(
        "/v1/auth/mfa/webauthn/register/finish",
        json={"factor_id": begin["factor_id"], "credential": credential, "name": "Laptop"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "webauthn"


async def test_passkey_registration_refuses_a_wrong_origin(client):
    await make_account(client, "pk0@example.com")
    begin = (await client.post("/v1/auth/mfa/webauthn/register/begin")).json()
    credential = SoftAuthenticator().create(begin["options"], origin="https://evil.example")
    r = await client.post(
        "/v1/auth/mfa/webauthn/register/finish",
        json={"factor_id": begin["factor_id"], "credential": credential},
    )
    assert r.status_code == 400 and error_code(r) == "webauthn_failed"
    assert (await client.get("/v1/auth/mfa/factors")).json()["data"] == []


async def test_passkey_sign_in_and_counter_replay(client, new_client):
    await make_account(client, "pk1@example.com")
    authenticator = SoftAuthenticator()
    await _register(client, authenticator)
    browser = new_client("10.1.0.2")
    challenge = await password_step(browser, "pk1@example.com")
    assert challenge["factors"] == ["webauthn"]
    token = challenge["challenge_token"]
    options = (
        await browser.post("/v1/auth/login/mfa/webauthn/begin", json={"challenge_token": token})
    ).json()["options"]
    assertion = authenticator.get(options)
    r = await browser.post(
        "/v1/auth/login/mfa/webauthn/finish",
        json={"challenge_token": token, "credential": assertion},
    )
    assert r.status_code == 200, r.text
    assert (await browser.get("/v1/auth/me")).status_code == 200

    # A cloned authenticator presents a counter that did not move forward: refused.
    other = new_client("10.1.0.3")
    token2 = (await password_step(other, "pk1@example.com"))["challenge_token"]
    options2 = (
        await other.post("/v1/auth/login/mfa/webauthn/begin", json={"challenge_token": token2})
    ).json()["options"]
    cloned = authenticator.get(options2, sign_count=1)
    r = await other.post(
        "/v1/auth/login/mfa/webauthn/finish", json={"challenge_token": token2, "credential": cloned}
    )
    assert r.status_code == 400 and error_code(r) == "webauthn_failed"
    # The ceremony challenge was used up: replaying a good assertion needs a new begin.
    r = await other.post(
        "/v1/auth/login/mfa/webauthn/finish",
        json={"challenge_token": token2, "credential": authenticator.get(options2)},
    )
    assert r.status_code == 400 and error_code(r) == "factor_unavailable"


async def test_passkey_assertion_from_a_wrong_origin_is_refused(client, new_client):
    await make_account(client, "pk2@example.com")
    authenticator = SoftAuthenticator()
    await _register(client, authenticator)
    browser = new_client("10.1.0.4")
    token = (await password_step(browser, "pk2@example.com"))["challenge_token"]
    options = (
        await browser.post("/v1/auth/login/mfa/webauthn/begin", json={"challenge_token": token})
    ).json()["options"]
    r = await browser.post(
        "/v1/auth/login/mfa/webauthn/finish",
        json={
            "challenge_token": token,
            "credential": authenticator.get(options, origin="https://phish.example"),
        },
    )
    assert r.status_code == 400 and error_code(r) == "webauthn_failed"
    assert (await browser.get("/v1/auth/me")).status_code == 401
