"""Pre-hijacking: someone signs up with an address that is not theirs, sets a password, signs
in, makes a key, enrols a second factor. The moment the address's owner proves control of it
(the verification link, a magic link, a password reset, a provider that vouches for it), none
of that works any more and the owner signs in with nothing of the squatter's in the way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from httpx import AsyncClient

from tests.fakes.identity_helpers import enroll_totp
from tests.helpers import ORIGIN, PASSWORD, last_link, login, signup
from tests.identity.test_oauth import _flow, idp  # noqa: F401 (the provider fixture)

VICTIM = "owner@example.com"
MAGIC = r"consume\?token=([A-Za-z0-9_\-]+)"
NEW_PASSWORD = "the owner's own passphrase 77"


@dataclass
class Squatter:
    browser: AsyncClient
    key: str


def _ssh_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " squatter"


async def _squat(new_client: Any) -> Squatter:
    browser = new_client("10.66.0.1")
    await signup(browser, VICTIM)
    await login(browser, VICTIM)
    r = await browser.post("/v1/api-keys", json={"name": "persist", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    key = str(r.json()["key"])
    await enroll_totp(browser)
    r = await browser.post(
        "/v1/account/ssh-keys", json={"name": "mine", "public_key": _ssh_public_key()}
    )
    assert r.status_code == 201, r.text
    return Squatter(browser, key)


async def _squatter_holds_nothing(squatter: Squatter, new_client: Any) -> None:
    assert (await squatter.browser.get("/v1/auth/me")).status_code == 401
    key_client = new_client("10.66.0.2")
    r = await key_client.get("/v1/api-keys", headers={"Authorization": f"Bearer {squatter.key}"})
    assert r.status_code == 401
    r = await new_client("10.66.0.3").post(
        "/v1/auth/login", json={"email": VICTIM, "password": PASSWORD}
    )
    assert r.status_code == 401


async def _owner_is_in_without_their_factor(owner: AsyncClient) -> None:
    owner.headers.setdefault("Origin", ORIGIN["Origin"])
    assert (await owner.get("/v1/auth/mfa/factors")).json()["data"] == []
    assert (await owner.get("/v1/account/ssh-keys")).json()["data"] == []
    keys = (await owner.get("/v1/api-keys")).json()["data"]
    assert keys and all(k["revoked_at"] for k in keys)


async def test_verification_link_opened_by_the_owner(client, new_client, run_jobs, settings):
    squatter = await _squat(new_client)
    await run_jobs()
    token = last_link(settings, VICTIM)
    owner = new_client("10.77.0.1")  # the mailbox's owner, in their own browser
    r = await owner.get("/v1/auth/verify-email", params={"token": token})
    assert r.status_code == 200 and r.json()["password_kept"] is False
    await _squatter_holds_nothing(squatter, new_client)
    # The owner signs in by magic link and meets no second factor of the squatter's.
    await owner.post("/v1/auth/login/magic-link/request", json={"email": VICTIM})
    await run_jobs()
    r = await owner.get(
        "/v1/auth/login/magic-link/consume", params={"token": last_link(settings, VICTIM, MAGIC)}
    )
    assert r.status_code == 200 and r.json()["mfa_required"] is False
    await _owner_is_in_without_their_factor(owner)


async def test_verification_in_the_signup_browser_keeps_the_account(
    client, new_client, run_jobs, settings
):
    await signup(client, "mine@example.com")
    await run_jobs()
    r = await client.get(
        "/v1/auth/verify-email", params={"token": last_link(settings, "mine@example.com")}
    )
    assert r.status_code == 200 and r.json()["password_kept"] is True
    await login(new_client(), "mine@example.com")


async def test_magic_link(client, new_client, run_jobs, settings):
    squatter = await _squat(new_client)
    owner = new_client("10.77.0.2")
    await owner.post("/v1/auth/login/magic-link/request", json={"email": VICTIM})
    await run_jobs()
    r = await owner.get(
        "/v1/auth/login/magic-link/consume", params={"token": last_link(settings, VICTIM, MAGIC)}
    )
    assert r.status_code == 200 and r.json()["mfa_required"] is False, r.text
    assert r.json()["user"]["has_password"] is False
    await _squatter_holds_nothing(squatter, new_client)
    await _owner_is_in_without_their_factor(owner)


async def test_password_reset(client, new_client, run_jobs, settings):
    squatter = await _squat(new_client)
    owner = new_client("10.77.0.3")
    await owner.post("/v1/auth/forgot-password", json={"email": VICTIM})
    await run_jobs()
    r = await owner.post(
        "/v1/auth/reset-password",
        json={"token": last_link(settings, VICTIM), "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 200, r.text
    await _squatter_holds_nothing(squatter, new_client)
    # The new password signs in with no second factor in the way.
    body = await login(owner, VICTIM, NEW_PASSWORD)
    assert body["mfa_required"] is False
    await _owner_is_in_without_their_factor(owner)


async def test_oauth(client, new_client, idp):  # noqa: F811
    squatter = await _squat(new_client)
    idp.user = {"sub": "5005", "email": VICTIM, "email_verified": True, "name": "Owner"}
    owner = new_client("10.77.0.4")
    r = await _flow(owner)
    assert r.status_code == 200 and r.json()["mfa_required"] is False, r.text
    await _squatter_holds_nothing(squatter, new_client)
    await _owner_is_in_without_their_factor(owner)
