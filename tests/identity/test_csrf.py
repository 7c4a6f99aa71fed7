"""CSRF: cookie-authenticated writes need an allowed Origin or X-CSRF-Token equal to the
fy_csrf cookie; API-key requests need neither."""

from __future__ import annotations

from tests.helpers import error_code, make_account, make_api_key


async def _cookie_client(client, new_client):  # type: ignore[no-untyped-def]
    """A browser holding the session cookies but sending no Origin by default."""
    await make_account(client, "csrf@example.com")
    browser = new_client()
    browser.headers["Cookie"] = "; ".join(
        f"{name}={client.cookies.get(name)}" for name in ("fy_access", "fy_csrf")
    )
    return browser


async def test_cookie_write_without_origin_or_token_is_refused(client, new_client):
    browser = await _cookie_client(client, new_client)
    r = await browser.patch("/v1/auth/me", json={"name": "x"})
    assert r.status_code == 403 and error_code(r) == "csrf_failed"
    r = await browser.post("/v1/api-keys", json={"name": "x"})
    assert r.status_code == 403 and error_code(r) == "csrf_failed"
    # Reads need no CSRF proof.
    assert (await browser.get("/v1/auth/me")).status_code == 200
    assert (await client.get("/v1/api-keys")).json()["data"] == []


async def test_foreign_origin_is_refused_even_with_a_token(client, new_client):
    browser = await _cookie_client(client, new_client)
    for origin in ("https://evil.example", "http://testserver.evil.example", "null"):
        r = await browser.patch(
            "/v1/auth/me",
            json={"name": "x"},
            headers={"Origin": origin, "X-CSRF-Token": client.cookies.get("fy_csrf") or ""},
        )
        assert r.status_code == 403 and error_code(r) == "csrf_failed", origin


async def test_own_origin_or_matching_token_passes(client, new_client):
    browser = await _cookie_client(client, new_client)
    r = await browser.patch(
        "/v1/auth/me", json={"name": "A"}, headers={"Origin": "http://testserver"}
    )
    assert r.status_code == 200
    token = client.cookies.get("fy_csrf") or ""
    r = await browser.patch("/v1/auth/me", json={"name": "B"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["name"] == "B"
    wrong = await browser.patch("/v1/auth/me", json={"name": "C"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403 and error_code(wrong) == "csrf_failed"


async def test_trusted_origins_come_from_settings(client, new_client, settings):
    browser = await _cookie_client(client, new_client)
    settings.csrf_trusted_origins = ["https://console.example.com"]
    r = await browser.patch(
        "/v1/auth/me", json={"name": "A"}, headers={"Origin": "https://console.example.com"}
    )
    assert r.status_code == 200


async def test_api_key_requests_need_no_csrf(client, new_client):
    await make_account(client, "csrfkey@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bot = new_client()
    r = await bot.patch(
        "/v1/auth/me",
        json={"name": "bot"},
        headers={"Authorization": f"Bearer {key}", "Origin": "https://anywhere.example"},
    )
    assert r.status_code == 200 and r.json()["name"] == "bot"
