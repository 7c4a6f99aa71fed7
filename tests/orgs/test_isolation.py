"""Two orgs never see or change each other's rows through any org route: every attempt is a 404
and leaves the other org exactly as it was."""

from __future__ import annotations

from tests.helpers import error_code, make_api_key
from tests.orgs.conftest import audit_actions


async def _snapshot(client, org_id: str) -> dict:
    org = (await client.get(f"/v1/orgs/{org_id}")).json()
    members = (await client.get(f"/v1/orgs/{org_id}/members")).json()["data"]
    invitations = (await client.get(f"/v1/orgs/{org_id}/invitations")).json()["data"]
    allowlist = (
        await client.get("/v1/orgs/me/ip-allowlist", headers={"X-Forkyard-Org": org_id})
    ).json()["data"]
    return {"org": org, "members": members, "invitations": invitations, "allowlist": allowlist}


async def test_one_org_cannot_reach_another(orgs):
    ada = await orgs.person("ada@example.com")
    acme = await orgs.team(ada, "Acme")
    alice = await orgs.join(acme, "alice@example.com", "member")
    inv_id, _ = await orgs.invite(ada.client, acme.id, "pending@example.com")
    ada.client.headers["X-Forkyard-Org"] = acme.id
    entry = (await ada.client.post("/v1/orgs/me/ip-allowlist", json={"cidr": "127.0.0.0/8"})).json()
    del ada.client.headers["X-Forkyard-Org"]
    before = await _snapshot(ada.client, acme.id)

    # Zed owns another team and is an admin-scoped caller in every sense, just not in Acme.
    zed = await orgs.person("zed@example.com")
    zteam = await orgs.team(zed, "Zeta")
    zed_key = await make_api_key(zed.client, ["read", "write", "admin"])
    zed.client.headers["X-Forkyard-Org"] = zteam.id
    zed_team_key = await make_api_key(zed.client, ["read", "write", "admin"])
    del zed.client.headers["X-Forkyard-Org"]
    bearer, team_bearer = orgs.new_client(), orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {zed_key}"
    team_bearer.headers["Authorization"] = f"Bearer {zed_team_key}"

    attempts = [
        ("GET", f"/v1/orgs/{acme.id}", None),
        ("PATCH", f"/v1/orgs/{acme.id}", {"name": "Pwned"}),
        ("GET", f"/v1/orgs/{acme.id}/members", None),
        ("PATCH", f"/v1/orgs/{acme.id}/members/{alice.user_id}", {"role": "viewer"}),
        ("DELETE", f"/v1/orgs/{acme.id}/members/{alice.user_id}", None),
        ("PATCH", f"/v1/orgs/{acme.id}/members/{zed.user_id}", {"role": "owner"}),
        ("POST", f"/v1/orgs/{acme.id}/invitations", {"email": "zed@example.com"}),
        ("GET", f"/v1/orgs/{acme.id}/invitations", None),
        ("DELETE", f"/v1/orgs/{acme.id}/invitations/{inv_id}", None),
        ("DELETE", f"/v1/orgs/me/ip-allowlist/{entry['id']}", None),
        # Acme's ids under Zeta's path: still nothing.
        ("PATCH", f"/v1/orgs/{zteam.id}/members/{alice.user_id}", {"role": "viewer"}),
        ("DELETE", f"/v1/orgs/{zteam.id}/members/{ada.user_id}", None),
        ("DELETE", f"/v1/orgs/{zteam.id}/invitations/{inv_id}", None),
    ]
    for caller in (zed.client, bearer, team_bearer):
        for method, path, body in attempts:
            r = await caller.request(method, path, json=body)
            assert r.status_code == 404 and error_code(r) == "not_found", (method, path, r.text)
    # The same for an org id that does not exist at all: indistinguishable.
    r = await zed.client.get("/v1/orgs/org_00000000000000000000000000")
    assert r.status_code == 404 and error_code(r) == "not_found"
    # Zed's lists hold only Zed's rows.
    assert acme.id not in {o["id"] for o in (await zed.client.get("/v1/orgs")).json()["data"]}
    assert (await zed.client.get("/v1/orgs/me/ip-allowlist")).json()["data"] == []
    zeta_members = (await zed.client.get(f"/v1/orgs/{zteam.id}/members")).json()["data"]
    assert [m["user_id"] for m in zeta_members] == [zed.user_id]

    assert await _snapshot(ada.client, acme.id) == before
    assert "member.removed" not in await audit_actions(ada.client, acme.id)


async def test_acting_for_an_org_you_are_not_in_is_404(orgs):
    ada = await orgs.person("ada@example.com")
    acme = await orgs.team(ada, "Acme")
    zed = await orgs.person("zed@example.com")
    # A real org Zed is not in and an org that does not exist answer alike: Zed learns nothing.
    for org_id in (acme.id, "org_00000000000000000000000000", "nonsense"):
        for method, path in (("GET", "/v1/auth/me"), ("GET", "/v1/audit"), ("POST", "/v1/orgs")):
            r = await zed.client.request(
                method, path, headers={"X-Forkyard-Org": org_id}, json={"name": "Z"}
            )
            assert r.status_code == 404 and error_code(r) == "not_found", (org_id, path, r.text)
    # Nothing was made on the way, and a member of the org still acts for it.
    assert [o["id"] for o in (await zed.client.get("/v1/orgs")).json()["data"]] == [zed.org_id]
    r = await ada.client.get("/v1/audit", headers={"X-Forkyard-Org": acme.id})
    assert r.status_code == 200
