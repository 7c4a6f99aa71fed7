"""Refresh rotation and reuse detection, logout, and the sessions list (tag sessions)."""

from __future__ import annotations

from tests.helpers import ORIGIN, PASSWORD, error_code, make_account, make_api_key


def _cookie_header(**cookies: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), **ORIGIN}


async def test_refresh_rotates_both_tokens(client):
    await make_account(client, "rot@example.com")
    old_access = client.cookies.get("fy_access")
    old_refresh = client.cookies.get("fy_refresh")
    r = await client.post("/v1/auth/refresh")
    assert r.status_code == 200, r.text
    assert client.cookies.get("fy_refresh") not in (None, old_refresh)
    assert client.cookies.get("fy_access") not in (None, old_access)
    assert (await client.get("/v1/auth/me")).status_code == 200
    # The old access token stopped working when it was swapped.
    stale = await client.get("/v1/auth/me", headers=_cookie_header(fy_access=old_access))
    assert stale.status_code == 401


async def test_refresh_token_reuse_revokes_the_whole_session(client, new_client):
    await make_account(client, "reuse@example.com")
    stolen = client.cookies.get("fy_refresh")
    assert (await client.post("/v1/auth/refresh")).status_code == 200  # the owner rotates
    assert (await client.get("/v1/auth/me")).status_code == 200

    thief = new_client()
    r = await thief.post("/v1/auth/refresh", headers=_cookie_header(fy_refresh=stolen))
    assert r.status_code == 401 and error_code(r) == "session_revoked"
    assert "fy_access" not in r.headers.get("set-cookie", "")

    # Both holders are out: the owner's fresh access and refresh tokens are dead too.
    assert (await client.get("/v1/auth/me")).status_code == 401
    again = await client.post("/v1/auth/refresh")
    assert again.status_code == 401


async def test_refresh_needs_a_cookie_and_csrf(client, new_client):
    await make_account(client, "rcsrf@example.com")
    refresh = client.cookies.get("fy_refresh")
    bare = new_client()
    r = await bare.post("/v1/auth/refresh")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    foreign = await bare.post(
        "/v1/auth/refresh",
        headers={"Cookie": f"fy_refresh={refresh}", "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and error_code(foreign) == "csrf_failed"


async def test_logout_revokes_the_session_and_clears_cookies(client, new_client):
    await make_account(client, "out@example.com")
    access = client.cookies.get("fy_access")
    refresh = client.cookies.get("fy_refresh")
    r = await client.post("/v1/auth/logout")
    assert r.status_code == 204
    cleared = r.headers.get_list("set-cookie")
    assert any(c.startswith("fy_access=") and "Max-Age=0" in c for c in cleared)
    assert any(c.startswith("fy_refresh=") and "Max-Age=0" in c for c in cleared)
    other = new_client()
    # Even a copy of the cookies made before logout no longer works.
    assert (
        await other.get("/v1/auth/me", headers=_cookie_header(fy_access=access))
    ).status_code == 401
    assert (
        await other.post("/v1/auth/refresh", headers=_cookie_header(fy_refresh=refresh))
    ).status_code == 401
    # Logging out without a session is harmless.
    assert (await other.post("/v1/auth/logout")).status_code == 204


async def test_logout_with_cookie_needs_csrf(client, new_client):
    await make_account(client, "outcsrf@example.com")
    access = client.cookies.get("fy_access")
    r = await new_client().post(
        "/v1/auth/logout",
        headers={"Cookie": f"fy_access={access}", "Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and error_code(r) == "csrf_failed"
    assert (await client.get("/v1/auth/me")).status_code == 200


async def test_sessions_list_marks_current_and_revoke_one(client, new_client):
    await make_account(client, "dev@example.com")
    laptop = new_client("10.0.0.2")
    laptop.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0)"
    r = await laptop.post(
        "/v1/auth/login", json={"email": "dev@example.com", "password": PASSWORD}, headers=ORIGIN
    )
    assert r.status_code == 200
    laptop.headers.update(ORIGIN)

    listed = (await client.get("/v1/auth/me/sessions")).json()["data"]
    assert len(listed) == 2
    assert [s["current"] for s in listed].count(True) == 1
    mine = next(s for s in listed if s["current"])
    theirs = next(s for s in listed if not s["current"])
    assert theirs["ip"] == "10.0.0.2" and theirs["device"] == "Windows"
    assert {"id", "device", "ip", "user_agent", "created_at", "last_seen_at"} <= set(mine)

    assert (await client.delete(f"/v1/auth/me/sessions/{theirs['id']}")).status_code == 204
    assert (await laptop.get("/v1/auth/me")).status_code == 401
    assert (await client.get("/v1/auth/me")).status_code == 200
    # Gone from the list; revoking it again, or an unknown or foreign-prefix id, is 404.
    assert [s["id"] for s in (await client.get("/v1/auth/me/sessions")).json()["data"]] == [
        mine["id"]
    ]
    for bad in (theirs["id"], "ses_00000000000000000000000000", "key_abc", "nonsense"):
        r = await client.delete(f"/v1/auth/me/sessions/{bad}")
        assert r.status_code == 404 and error_code(r) == "not_found", bad


async def test_cannot_revoke_another_users_session(client, new_client):
    await make_account(client, "a1@example.com")
    other = await make_account(new_client(), "b1@example.com")
    theirs = (await other.client.get("/v1/auth/me/sessions")).json()["data"][0]["id"]
    r = await client.delete(f"/v1/auth/me/sessions/{theirs}")
    assert r.status_code == 404
    assert (await other.client.get("/v1/auth/me")).status_code == 200


async def test_revoke_others_keeps_the_caller(client, new_client):
    await make_account(client, "many@example.com")
    others = []
    for i in range(2):
        c = new_client(f"10.0.1.{i}")
        r = await c.post(
            "/v1/auth/login",
            json={"email": "many@example.com", "password": PASSWORD},
            headers=ORIGIN,
        )
        assert r.status_code == 200
        others.append(c)
    r = await client.post("/v1/auth/me/sessions/revoke-others")
    assert r.status_code == 200 and r.json() == {"revoked": 2}
    assert (await client.get("/v1/auth/me")).status_code == 200
    for c in others:
        assert (await c.get("/v1/auth/me")).status_code == 401


async def test_an_api_key_cannot_sign_its_creator_out(client, new_client):
    await make_account(client, "keyed@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bot = new_client()
    r = await bot.post(
        "/v1/auth/me/sessions/revoke-others", headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 403 and error_code(r) == "cookie_session_required"
    assert (await client.get("/v1/auth/me")).status_code == 200
