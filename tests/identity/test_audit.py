"""GET /v1/audit: security events with actor, IP and user agent, filterable, per org."""

from __future__ import annotations

from datetime import timedelta

from forkyard.kit.clock import clock, rfc3339, utcnow
from tests.helpers import ORIGIN, PASSWORD, error_code, make_account


async def _events(client, **params):  # type: ignore[no-untyped-def]
    r = await client.get("/v1/audit", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_security_events_are_recorded_with_ip_and_user_agent(client, new_client):
    client.headers["User-Agent"] = "audit-test-browser/1.0"
    acct = await make_account(client, "aud@example.com")
    attacker = new_client("192.0.2.66")
    attacker.headers["User-Agent"] = "evil-bot/2"
    r = await attacker.post(
        "/v1/auth/login", json={"email": acct.email, "password": "wrong pass 99"}
    )
    assert r.status_code == 401
    await client.post("/v1/auth/sudo", json={"password": PASSWORD})
    key = (await client.post("/v1/api-keys", json={"name": "k"})).json()
    await client.post(f"/v1/api-keys/{key['id']}/rotate")
    await client.delete(f"/v1/api-keys/{key['id']}")

    events = await _events(client)
    actions = [e["action"] for e in events]
    for expected in (
        "user.signup",
        "auth.login",
        "auth.login_failed",
        "auth.sudo",
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
    ):
        assert expected in actions, (expected, actions)
    stamps = [e["created_at"] for e in events]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    failed = next(e for e in events if e["action"] == "auth.login_failed")
    assert failed["ip"] == "192.0.2.66" and failed["user_agent"] == "evil-bot/2"
    login = next(e for e in events if e["action"] == "auth.login")
    assert login["actor_id"] == acct.user_id and login["user_agent"] == "audit-test-browser/1.0"
    assert login["ip"] == "127.0.0.1"
    created = next(e for e in events if e["action"] == "api_key.created")
    assert created["target_id"] == key["id"] and created["actor_type"] == "user"


async def test_audit_filters(client):
    acct = await make_account(client, "filt@example.com")
    first = (await client.post("/v1/api-keys", json={"name": "a"})).json()["id"]
    clock.advance(timedelta(minutes=10))
    second = (await client.post("/v1/api-keys", json={"name": "b"})).json()["id"]

    by_target = await _events(client, target=first)
    assert [e["action"] for e in by_target] == ["api_key.created"]
    by_action = await _events(client, action="api_key.created")
    assert {e["target_id"] for e in by_action} == {first, second}
    by_prefix = await _events(client, action="api_key.")
    assert len(by_prefix) == 2
    by_actor = await _events(client, actor=acct.user_id)
    assert {first, second} <= {e["target_id"] for e in by_actor}
    assert await _events(client, actor="usr_00000000000000000000000000") == []

    cut = utcnow() - timedelta(minutes=5)
    recent = await _events(client, since=rfc3339(cut))
    assert [e["target_id"] for e in recent] == [second]
    older = await _events(client, until=rfc3339(cut))
    assert first in [e["target_id"] for e in older] and second not in [
        e["target_id"] for e in older
    ]
    bad = await client.get("/v1/audit", params={"since": "yesterday"})
    assert bad.status_code == 422 and error_code(bad) == "validation_failed"


async def test_audit_is_org_scoped_and_for_admins(client, new_client, settings, run_jobs):
    await make_account(client, "own@example.com")
    other = await make_account(new_client(), "oth@example.com")
    await other.client.post("/v1/api-keys", json={"name": "theirs"})
    mine = await _events(client)
    assert all(e["action"] != "api_key.created" for e in mine)
    assert all(e["actor_id"] != other.user_id for e in mine)

    # A plain member of a team org cannot read its audit log.
    team = (await client.post("/v1/orgs", json={"name": "Team"})).json()["id"]
    r = await client.post(f"/v1/orgs/{team}/invitations", json={"email": other.email})
    assert r.status_code == 201
    await run_jobs()
    from tests.helpers import last_link

    token = last_link(settings, other.email, r"/v1/auth/invitations/([A-Za-z0-9_\-]+)")
    assert (await other.client.post(f"/v1/auth/invitations/{token}/accept")).status_code == 200
    r = await other.client.get("/v1/audit", headers={"X-Forkyard-Org": team, **ORIGIN})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    team_log = await _events(client, **{})
    assert team_log  # the owner's personal org log still reads
    r = await client.get("/v1/audit", headers={"X-Forkyard-Org": team})
    assert r.status_code == 200


async def test_logout_is_recorded_once(client, new_client):
    client.headers["User-Agent"] = "audit-test-browser/1.0"
    acct = await make_account(client, "bye@example.com")
    first = await client.get("/v1/auth/me/sessions")
    session_id = next(s["id"] for s in first.json()["data"] if s["current"])
    access = client.cookies.get("fy_access")
    assert (await client.post("/v1/auth/logout")).status_code == 204
    # A stale copy of the cookie signs nothing out again, so nothing more is recorded.
    stale = new_client()
    r = await stale.post("/v1/auth/logout", headers={"Cookie": f"fy_access={access}", **ORIGIN})
    assert r.status_code == 204

    r = await client.post("/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
    assert r.status_code == 200
    logouts = [e for e in await _events(client) if e["action"] == "auth.logout"]
    assert len(logouts) == 1, logouts
    event = logouts[0]
    assert event["actor_id"] == acct.user_id and event["actor_type"] == "user"
    assert event["target_type"] == "session" and event["target_id"] == session_id
    assert event["ip"] == "127.0.0.1" and event["user_agent"] == "audit-test-browser/1.0"


async def test_requests_that_only_name_an_account_are_recorded_without_an_actor(client, new_client):
    acct = await make_account(client, "named@example.com")
    stranger = new_client("192.0.2.7")
    stranger.headers["User-Agent"] = "someone/1"
    r = await stranger.post("/v1/auth/forgot-password", json={"email": acct.email})
    assert r.status_code == 200
    r = await stranger.post("/v1/auth/login/magic-link/request", json={"email": acct.email})
    assert r.status_code == 200
    events = {e["action"]: e for e in await _events(client)}
    for action in ("auth.password_reset_requested", "auth.magic_link_requested"):
        event = events[action]
        assert event["actor_id"] is None and event["actor_type"] == "anonymous", event
        assert event["target_type"] == "user" and event["target_id"] == acct.user_id
        assert event["ip"] == "192.0.2.7" and event["user_agent"] == "someone/1"
    signup = events["user.signup"]
    assert signup["actor_id"] == acct.user_id and signup["actor_type"] == "user"
