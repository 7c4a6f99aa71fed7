"""Sudo: every sudo-gated route refuses without the grant, works with it, and the grant expires
after five minutes and belongs to the session that made it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forkyard.kit.clock import clock
from tests.helpers import PASSWORD, error_code, login, make_account, make_api_key


async def _key_id(client) -> str:
    r = await client.post("/v1/api-keys", json={"name": "to-rotate"})
    assert r.status_code == 201
    return str(r.json()["id"])


# Each sudo-gated route: (method, path template needing a key id or not).
SUDO_ROUTES = [("POST", "/v1/api-keys/{key}/rotate"), ("DELETE", "/v1/auth/me")]


@pytest.mark.parametrize(("method", "template"), SUDO_ROUTES)
async def test_sudo_gated_routes_refuse_without_and_work_with_a_grant(client, method, template):
    await make_account(client, "sudo@example.com")
    path = template.format(key=await _key_id(client))
    refused = await client.request(method, path)
    assert refused.status_code == 403 and error_code(refused) == "sudo_required"

    wrong = await client.post("/v1/auth/sudo", json={"password": "not the password 1"})
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
    still = await client.request(method, path)
    assert still.status_code == 403 and error_code(still) == "sudo_required"

    grant = await client.post("/v1/auth/sudo", json={"password": PASSWORD})
    assert grant.status_code == 200, grant.text
    cookie = grant.headers["set-cookie"]
    assert "fy_sudo=" in cookie and "HttpOnly" in cookie and "Path=/v1" in cookie
    assert "samesite=strict" in cookie.lower()
    ok = await client.request(method, path)
    assert ok.status_code in (200, 204), ok.text


async def test_sudo_routes_walk_matches_the_list(app):
    """A new sudo-gated route must be added to SUDO_ROUTES (so it is tested above)."""
    from fastapi.routing import APIRoute

    from forkyard.identity.deps import require_sudo

    def uses_sudo(dependant) -> bool:  # type: ignore[no-untyped-def]
        return any(d.call is require_sudo or uses_sudo(d) for d in dependant.dependencies)

    found = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and uses_sudo(route.dependant)
        for method in route.methods
    }
    listed = {(m, t.replace("{key}", "{id}")) for m, t in SUDO_ROUTES}
    assert found >= listed
    # Routes other teams gate with sudo are fine; ours must all be listed.
    ours = {(m, p) for m, p in found if p.startswith(("/v1/api-keys", "/v1/auth/me"))}
    mfa_or_email = {
        (m, p) for m, p in ours if "/mfa" in p or "/email" in p or "/phone" in p or "/export" in p
    }
    assert ours - mfa_or_email <= listed, ours - mfa_or_email - listed


async def test_sudo_expires_after_five_minutes(client):
    await make_account(client, "exp@example.com")
    key = await _key_id(client)
    assert (await client.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    clock.advance(timedelta(minutes=4, seconds=50))
    assert (await client.post(f"/v1/api-keys/{key}/rotate")).status_code == 200
    clock.advance(timedelta(seconds=15))
    # The browser would have dropped the cookie; a client that keeps it is refused anyway.
    r = await client.post(f"/v1/api-keys/{key}/rotate")
    assert r.status_code == 403 and error_code(r) == "sudo_required"


async def test_sudo_grant_is_bound_to_its_session(client, new_client):
    await make_account(client, "bound@example.com")
    key = await _key_id(client)
    assert (await client.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    stolen = client.cookies.get("fy_sudo")
    other = new_client("10.9.9.9")
    await login(other, "bound@example.com")
    r = await other.post(
        f"/v1/api-keys/{key}/rotate",
        headers={"Cookie": f"fy_access={other.cookies.get('fy_access')}; fy_sudo={stolen}"},
    )
    assert r.status_code == 403 and error_code(r) == "sudo_required"


async def test_sudo_is_not_available_to_api_keys(client, new_client):
    await make_account(client, "keysudo@example.com")
    key = await make_api_key(client)
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    r = await bot.post("/v1/auth/sudo", json={"password": PASSWORD})
    assert r.status_code == 403 and error_code(r) == "cookie_session_required"
    r = await bot.delete("/v1/auth/me")
    assert r.status_code == 403 and error_code(r) == "cookie_session_required"


async def test_sudo_needs_csrf_like_any_cookie_write(client, new_client):
    await make_account(client, "sudocsrf@example.com")
    access = client.cookies.get("fy_access")
    r = await new_client().post(
        "/v1/auth/sudo",
        json={"password": PASSWORD},
        headers={"Cookie": f"fy_access={access}", "Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and error_code(r) == "csrf_failed"
