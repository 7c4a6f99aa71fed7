"""Orgs: listing with roles, creating team orgs, renaming, acting-org switching, pagination."""

from __future__ import annotations

from tests.helpers import error_code, make_api_key
from tests.orgs.conftest import audit_actions


async def test_new_account_lists_its_personal_org_as_owner(orgs):
    ada = await orgs.person("ada@example.com")
    r = await ada.client.get("/v1/orgs")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"data", "next_cursor"} and body["next_cursor"] is None
    assert [(o["id"], o["role"], o["is_personal"]) for o in body["data"]] == [
        (ada.org_id, "owner", True)
    ]


async def test_create_team_org_makes_creator_owner_and_is_audited(orgs):
    ada = await orgs.person("ada@example.com")
    r = await ada.client.post("/v1/orgs", json={"name": "  Acme  "})
    assert r.status_code == 201
    team = r.json()
    assert team["id"].startswith("org_") and team["name"] == "Acme"
    assert team["role"] == "owner" and team["is_personal"] is False
    got = await ada.client.get(f"/v1/orgs/{team['id']}")
    assert got.status_code == 200 and got.json() == team
    listed = (await ada.client.get("/v1/orgs")).json()["data"]
    assert [o["id"] for o in listed] == [team["id"], ada.org_id]  # newest first
    assert "org.created" in await audit_actions(ada.client, team["id"])


async def test_create_org_validates_name(orgs):
    ada = await orgs.person("ada@example.com")
    for bad in ({"name": ""}, {"name": "   "}, {"name": "x" * 201}, {}):
        r = await ada.client.post("/v1/orgs", json=bad)
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
    assert len((await ada.client.get("/v1/orgs")).json()["data"]) == 1


async def test_org_list_paginates(orgs):
    ada = await orgs.person("ada@example.com")
    made = [(await orgs.team(ada, f"team {i}")).id for i in range(4)]
    expected = [*reversed(made), ada.org_id]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await ada.client.get("/v1/orgs", params=params)).json()
        assert len(body["data"]) <= 2
        seen += [o["id"] for o in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 3
    bad = await ada.client.get("/v1/orgs", params={"cursor": "!!not-a-cursor"})
    assert bad.status_code == 400 and error_code(bad) == "bad_request"
    too_many = await ada.client.get("/v1/orgs", params={"limit": 201})
    assert too_many.status_code == 422


async def test_rename_needs_admin(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    admin = await orgs.join(team, "adm@example.com", "admin")
    member = await orgs.join(team, "mem@example.com", "member")
    viewer = await orgs.join(team, "vie@example.com", "viewer")
    for who in (member, viewer):
        r = await who.client.patch(f"/v1/orgs/{team.id}", json={"name": "Hijacked"})
        assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await admin.client.patch(f"/v1/orgs/{team.id}", json={"name": "Acme Corp"})
    assert r.status_code == 200 and r.json()["name"] == "Acme Corp" and r.json()["role"] == "admin"
    assert (await viewer.client.get(f"/v1/orgs/{team.id}")).json()["name"] == "Acme Corp"
    assert "org.renamed" in await audit_actions(ada.client, team.id)


async def test_api_key_sees_and_acts_only_for_its_org(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    key = await make_api_key(ada.client, ["read", "write", "admin"])  # personal org key
    bearer = orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {key}"
    listed = (await bearer.get("/v1/orgs")).json()["data"]
    assert [(o["id"], o["role"]) for o in listed] == [(ada.org_id, None)]
    assert (await bearer.get(f"/v1/orgs/{ada.org_id}")).status_code == 200
    # The key's creator owns the team, but the key belongs to the personal org.
    for method, path in (
        ("GET", f"/v1/orgs/{team.id}"),
        ("GET", f"/v1/orgs/{team.id}/members"),
        ("PATCH", f"/v1/orgs/{team.id}"),
    ):
        r = await bearer.request(method, path, json={"name": "x"} if method == "PATCH" else None)
        assert r.status_code == 404 and error_code(r) == "not_found", path
    # Creating orgs is something a person does, not a key.
    r = await bearer.post("/v1/orgs", json={"name": "Keyed"})
    assert r.status_code == 403 and error_code(r) == "cookie_session_required"


async def test_x_forkyard_org_switches_the_acting_org(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "admin")
    # Without the header Bob acts for his personal org; with it, for the team.
    personal_key = await make_api_key(bob.client, ["read"])
    r = await bob.client.post(
        "/v1/api-keys", json={"name": "team"}, headers={"X-Forkyard-Org": team.id}
    )
    assert r.status_code == 201 and r.json()["org_id"] == team.id
    keys = await bob.client.get("/v1/api-keys")
    assert {k["org_id"] for k in keys.json()["data"]} == {bob.org_id}
    team_keys = await bob.client.get("/v1/api-keys", headers={"X-Forkyard-Org": team.id})
    assert [k["org_id"] for k in team_keys.json()["data"]] == [team.id]
    # Naming an org you do not belong to is a 404, whether it exists or not (API.md).
    for other in (ada.org_id, "org_00000000000000000000000000"):
        r = await bob.client.get("/v1/api-keys", headers={"X-Forkyard-Org": other})
        assert r.status_code == 404 and error_code(r) == "not_found"
    # A key carries its own org; the header cannot move it.
    bearer = orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {personal_key}"
    r = await bearer.get("/v1/api-keys", headers={"X-Forkyard-Org": team.id})
    assert r.status_code == 200
    assert {k["org_id"] for k in r.json()["data"]} == {bob.org_id}
