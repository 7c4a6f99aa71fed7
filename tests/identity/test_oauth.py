"""OAuth/OIDC sign-in against a real provider on 127.0.0.1: state and PKCE, ID-token checks,
linking only on a verified email, pre-hijacked accounts neutralised, MFA still applies."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.identity_helpers import enroll_totp, oathtool
from tests.fakes.oauth_server import OAuthServer
from tests.helpers import PASSWORD, error_code, make_account, signup


@pytest.fixture
def idp(settings):
    with OAuthServer() as server:
        settings.oauth_oidc_client_id = server.client_id
        settings.oauth_oidc_client_secret = server.client_secret
        settings.oauth_oidc_issuer = server.url
        settings.oauth_github_client_id = server.client_id
        settings.oauth_github_client_secret = server.client_secret
        settings.oauth_github_base_url = server.url
        settings.oauth_github_api_url = server.url
        server.redirect_uris |= {
            "http://testserver/v1/auth/oauth/oidc/callback",
            "http://testserver/v1/auth/oauth/github/callback",
        }
        yield server


async def _flow(browser, provider: str = "oidc") -> httpx.Response:
    start = await browser.get(f"/v1/auth/oauth/{provider}")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as real:  # the browser visits the provider over real HTTP
        consent = await real.get(start.headers["location"])
    assert consent.status_code == 302, consent.text
    callback = consent.headers["location"].removeprefix("http://testserver")
    return await browser.get(callback)


async def test_providers_and_new_account(client, new_client, idp):
    providers = (await client.get("/v1/auth/oauth/providers")).json()["data"]
    assert {p["id"] for p in providers} == {"oidc", "github"}
    browser = new_client("10.6.0.2")
    r = await _flow(browser)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == "oauth@example.com" and "fy_access" in r.cookies
    sent = idp.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256" and sent["state"] and sent["nonce"]
    # The same provider account signs in to the same user next time.
    r2 = await _flow(new_client("10.6.0.3"))
    assert r2.json()["user"]["id"] == r.json()["user"]["id"]


async def test_callback_needs_the_browser_state_cookie(client, new_client, idp):
    browser = new_client("10.6.0.4")
    start = await browser.get("/v1/auth/oauth/oidc")
    async with httpx.AsyncClient() as real:
        consent = await real.get(start.headers["location"])
    callback = consent.headers["location"].removeprefix("http://testserver")
    victim = new_client("10.6.0.5")  # login CSRF: someone else's browser gets the callback
    r = await victim.get(callback)
    assert r.status_code == 400 and error_code(r) == "oauth_state_invalid"
    assert (await browser.get(callback)).status_code == 200
    assert (await browser.get(callback)).status_code == 400  # state is single use


async def test_unverified_provider_email_is_refused(client, new_client, idp):
    await make_account(client, "taken@example.com")
    idp.user = {"sub": "2002", "email": "taken@example.com", "email_verified": False, "name": "X"}
    r = await _flow(new_client("10.6.0.6"))
    assert r.status_code == 400 and error_code(r) == "oauth_email_unverified"


async def test_bad_id_token_is_refused(client, new_client, idp):
    idp.id_token_overrides = {"aud": "someone-else"}
    r = await _flow(new_client("10.6.0.7"))
    assert r.status_code == 400 and error_code(r) == "oauth_failed"


async def test_linking_a_verified_account_keeps_mfa(client, new_client, run_jobs, settings, idp):
    await make_account(client, "linked@example.com", run_jobs, settings, verify=True)
    secret = await enroll_totp(client)
    idp.user = {"sub": "3003", "email": "linked@example.com", "email_verified": True, "name": "L"}
    browser = new_client("10.6.0.8")
    r = await _flow(browser)
    assert r.status_code == 200 and r.json()["mfa_required"] is True
    assert "fy_access" not in r.cookies
    r = await browser.post(
        "/v1/auth/login/mfa",
        json={"challenge_token": r.json()["challenge_token"], "code": oathtool(secret, 30)},
    )
    assert r.status_code == 200, r.text


async def test_pre_hijacked_unverified_account_loses_its_password(client, new_client, idp):
    await signup(client, "victim@example.com")  # an attacker registered the address first
    idp.user = {"sub": "4004", "email": "victim@example.com", "email_verified": True, "name": "V"}
    r = await _flow(new_client("10.6.0.9"))
    assert r.status_code == 200 and r.json()["user"]["has_password"] is False
    r = await new_client("10.6.0.10").post(
        "/v1/auth/login", json={"email": "victim@example.com", "password": PASSWORD}
    )
    assert r.status_code == 401


async def test_github_flow(client, new_client, idp):
    idp.user = {"sub": "5005", "email": "gh@example.com", "email_verified": True, "name": "octo"}
    r = await _flow(new_client("10.6.0.11"), "github")
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == "gh@example.com"
    assert (await client.get("/v1/auth/oauth/nope")).status_code == 404
