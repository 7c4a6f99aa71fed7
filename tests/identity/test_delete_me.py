"""DELETE /v1/auth/me: a soft delete that clears cookies, revokes keys and sessions, blocks
sign-in and frees the address."""

from __future__ import annotations

from sqlalchemy import select

from forkyard.identity.models import User
from tests.helpers import PASSWORD, error_code, make_account, make_api_key, signup


async def test_delete_account(client, new_client, db):
    acct = await make_account(client, "gone@example.com")
    key = await make_api_key(client)
    other = new_client("10.4.4.4")
    r = await other.post("/v1/auth/login", json={"email": "gone@example.com", "password": PASSWORD})
    assert r.status_code == 200

    assert (await client.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    r = await client.delete("/v1/auth/me")
    assert r.status_code == 204
    cleared = r.headers.get_list("set-cookie")
    for name in ("fy_access", "fy_refresh", "fy_sudo"):
        assert any(c.startswith(f"{name}=") and "Max-Age=0" in c for c in cleared), name

    assert (await client.get("/v1/auth/me")).status_code == 401
    assert (await other.get("/v1/auth/me")).status_code == 401
    r = await new_client().get("/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    r = await new_client().post(
        "/v1/auth/login", json={"email": "gone@example.com", "password": PASSWORD}
    )
    assert r.status_code == 401 and error_code(r) == "invalid_credentials"

    # Soft: the row stays (audit references it) with personal data scrubbed.
    async with db.sessions() as session:
        row = (await session.execute(select(User).where(User.id == acct.user_id))).scalar_one()
    assert row.deleted_at is not None and row.password_hash is None
    assert "gone@example.com" not in row.email

    # The address can be used again by someone new.
    fresh = new_client()
    await signup(fresh, "gone@example.com")
    r = await fresh.post("/v1/auth/login", json={"email": "gone@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["id"] != acct.user_id
