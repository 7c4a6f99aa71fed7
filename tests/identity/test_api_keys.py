"""API keys: shown once, stored hashed, scoped, org-bound, last use recorded, dead the moment
they are revoked or expire, and rotatable."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from forkyard.kit.clock import clock, rfc3339, utcnow
from tests.helpers import PASSWORD, error_code, make_account


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _create(client, **body):  # type: ignore[no-untyped-def]
    r = await client.post("/v1/api-keys", json={"name": "ci", **body})
    assert r.status_code == 201, r.text
    return r.json()


async def test_key_is_shown_once_and_stored_only_as_a_hash(client, db):
    acct = await make_account(client, "k1@example.com")
    created = await _create(client)
    secret = created["key"]
    assert secret.startswith("fy_") and len(secret) > 30
    assert created["org_id"] == acct.org_id and created["scopes"] == ["read", "write"]
    assert created["prefix"] == secret[:10]

    shown = (await client.get(f"/v1/api-keys/{created['id']}")).json()
    listed = (await client.get("/v1/api-keys")).json()["data"]
    assert "key" not in shown and all("key" not in k for k in listed)
    assert secret not in (await client.get("/v1/api-keys")).text

    async with db.sessions() as session:
        row = (
            await session.execute(
                text("SELECT row_to_json(k)::text FROM api_keys k WHERE id = :id"),
                {"id": created["id"]},
            )
        ).scalar_one()
    assert secret not in row and secret[10:] not in row
    assert '"key_hash"' in row


async def test_key_authenticates_and_records_last_use(client, new_client):
    await make_account(client, "k2@example.com")
    created = await _create(client)
    assert created["last_used_at"] is None
    bot = new_client("10.1.2.3")
    me = await bot.get("/v1/auth/me", headers=bearer(created["key"]))
    assert me.status_code == 200 and me.json()["email"] == "k2@example.com"
    after = (await client.get(f"/v1/api-keys/{created['id']}")).json()
    assert after["last_used_at"] is not None and after["last_used_ip"] == "10.1.2.3"


async def test_read_only_key_cannot_write(client, new_client):
    await make_account(client, "k3@example.com")
    ro = (await _create(client, scopes=["read"]))["key"]
    bot = new_client()
    bot.headers.update(bearer(ro))
    assert (await bot.get("/v1/api-keys")).status_code == 200
    for method, path, body in [
        ("POST", "/v1/api-keys", {"name": "x"}),
        ("PATCH", "/v1/auth/me", {"name": "renamed"}),
        ("POST", "/v1/auth/me/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("POST", "/v1/auth/me/sessions/revoke-others", None),
    ]:
        r = await bot.request(method, path, json=body)
        assert r.status_code == 403 and error_code(r) == "forbidden", (path, r.text)
    assert (await client.get("/v1/auth/me")).json()["name"] == "Test"


async def test_key_cannot_have_more_scopes_than_its_creator(client, new_client):
    await make_account(client, "k4@example.com")
    ro = (await _create(client, scopes=["read"]))["key"]
    r = await new_client().post(
        "/v1/api-keys", json={"name": "up", "scopes": ["admin"]}, headers=bearer(ro)
    )
    assert r.status_code == 403
    bad = await client.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422 and error_code(bad) == "validation_failed"


async def test_revoked_key_stops_working_at_once(client, new_client):
    await make_account(client, "k5@example.com")
    created = await _create(client)
    bot = new_client()
    assert (await bot.get("/v1/auth/me", headers=bearer(created["key"]))).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    r = await bot.get("/v1/auth/me", headers=bearer(created["key"]))
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert (await client.get(f"/v1/api-keys/{created['id']}")).json()["revoked_at"] is not None
    # Revoking again is harmless.
    assert (await client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204


async def test_expired_key_stops_working(client, new_client):
    await make_account(client, "k6@example.com")
    expires = utcnow() + timedelta(hours=1)
    created = await _create(client, expires_at=rfc3339(expires))
    bot = new_client()
    assert (await bot.get("/v1/auth/me", headers=bearer(created["key"]))).status_code == 200
    past = await client.post(
        "/v1/api-keys", json={"name": "old", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert past.status_code == 422
    # A time without a zone is refused with a field error, not a 500.
    naive = await client.post(
        "/v1/api-keys", json={"name": "naive", "expires_at": "2030-01-01T00:00:00"}
    )
    assert naive.status_code == 422 and error_code(naive) == "validation_failed"
    clock.advance(timedelta(hours=1, seconds=1))
    assert (await bot.get("/v1/auth/me", headers=bearer(created["key"]))).status_code == 401


async def test_rotation_replaces_the_secret(client, new_client):
    await make_account(client, "k7@example.com")
    created = await _create(client)
    assert (await client.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    r = await client.post(f"/v1/api-keys/{created['id']}/rotate")
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
    bot = new_client()
    assert (await bot.get("/v1/auth/me", headers=bearer(created["key"]))).status_code == 401
    assert (await bot.get("/v1/auth/me", headers=bearer(rotated["key"]))).status_code == 200
    # A revoked key cannot be brought back by rotating it.
    assert (await client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    again = await client.post(f"/v1/api-keys/{created['id']}/rotate")
    assert again.status_code == 409


async def test_keys_are_org_bound(client, new_client):
    await make_account(client, "k8@example.com")
    other = await make_account(new_client(), "k9@example.com")
    mine = await _create(client)
    theirs = await _create(other.client)
    listed = [k["id"] for k in (await client.get("/v1/api-keys")).json()["data"]]
    assert mine["id"] in listed and theirs["id"] not in listed
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/v1/api-keys/{theirs['id']}")
        assert r.status_code == 404 and error_code(r) == "not_found"
    # And their key still works after my attempts.
    assert (await new_client().get("/v1/auth/me", headers=bearer(theirs["key"]))).status_code == 200


async def test_bad_authorization_headers_are_401(client):
    for header in ("Bearer", "Bearer ", "Basic abc", "Bearer fy_nope", "fy_nope"):
        r = await client.get("/v1/auth/me", headers={"Authorization": header})
        assert r.status_code == 401 and error_code(r) == "unauthenticated", header


async def test_key_list_pages(client):
    await make_account(client, "k10@example.com")
    ids = [(await _create(client, name=f"k{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/api-keys", params=params)).json()
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    bad = await client.get("/v1/api-keys", params={"cursor": "!!!"})
    assert bad.status_code == 400
    too_many = await client.get("/v1/api-keys", params={"limit": 201})
    assert too_many.status_code == 422
