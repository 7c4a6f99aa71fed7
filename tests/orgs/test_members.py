"""Members: listing, role changes, removal and leaving, the owner rules and the last owner."""

from __future__ import annotations

import asyncio

from tests.helpers import PASSWORD, error_code, make_api_key
from tests.orgs.conftest import audit_actions


async def test_member_list_is_documented_under_orgs_and_members(app):
    # The reference names the same URL twice ({id} under orgs, {org_id} under members).
    paths = app.openapi()["paths"]
    assert paths["/v1/orgs/{id}/members"]["get"]["tags"] == ["orgs"]
    assert paths["/v1/orgs/{org_id}/members"]["get"]["tags"] == ["members"]


async def test_members_list_with_roles_and_pages(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "viewer")
    r = await bob.client.get(f"/v1/orgs/{team.id}/members")
    assert r.status_code == 200
    body = r.json()
    assert body["next_cursor"] is None
    assert [(m["user_id"], m["email"], m["role"], m["org_id"]) for m in body["data"]] == [
        (bob.user_id, "bob@example.com", "viewer", team.id),
        (ada.user_id, "ada@example.com", "owner", team.id),
    ]
    page = (await ada.client.get(f"/v1/orgs/{team.id}/members", params={"limit": 1})).json()
    assert [m["user_id"] for m in page["data"]] == [bob.user_id] and page["next_cursor"]
    rest = await ada.client.get(
        f"/v1/orgs/{team.id}/members", params={"limit": 1, "cursor": page["next_cursor"]}
    )
    assert [m["user_id"] for m in rest.json()["data"]] == [ada.user_id]
    assert rest.json()["next_cursor"] is None


async def test_role_changes_follow_the_owner_rules(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    admin = await orgs.join(team, "adm@example.com", "admin")
    bob = await orgs.join(team, "bob@example.com", "member")
    members = f"/v1/orgs/{team.id}/members"

    # An admin manages non-owners ...
    r = await admin.client.patch(f"{members}/{bob.user_id}", json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    # ... but can neither make nor unmake owners.
    r = await admin.client.patch(f"{members}/{bob.user_id}", json={"role": "owner"})
    assert r.status_code == 403 and error_code(r) == "owner_required"
    r = await admin.client.patch(f"{members}/{ada.user_id}", json={"role": "member"})
    assert r.status_code == 403 and error_code(r) == "owner_required"
    r = await admin.client.delete(f"{members}/{ada.user_id}")
    assert r.status_code == 403 and error_code(r) == "owner_required"
    # Members and viewers manage nobody.
    r = await bob.client.patch(f"{members}/{admin.user_id}", json={"role": "viewer"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await bob.client.patch(f"{members}/{bob.user_id}", json={"role": "admin"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    # Unknown roles are a validation error.
    r = await ada.client.patch(f"{members}/{bob.user_id}", json={"role": "god"})
    assert r.status_code == 422 and error_code(r) == "validation_failed"

    # The owner can hand over ownership; then the first owner may step down.
    r = await ada.client.patch(f"{members}/{admin.user_id}", json={"role": "owner"})
    assert r.status_code == 200 and r.json()["role"] == "owner"
    r = await ada.client.patch(f"{members}/{ada.user_id}", json={"role": "admin"})
    assert r.status_code == 200
    assert (await ada.client.get(f"/v1/orgs/{team.id}")).json()["role"] == "admin"
    actions = await audit_actions(admin.client, team.id)
    assert actions.count("member.role_changed") == 3


async def test_last_owner_can_be_neither_demoted_nor_removed(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    await orgs.join(team, "adm@example.com", "admin")
    members = f"/v1/orgs/{team.id}/members"
    r = await ada.client.patch(f"{members}/{ada.user_id}", json={"role": "admin"})
    assert r.status_code == 409 and error_code(r) == "last_owner"
    r = await ada.client.delete(f"{members}/{ada.user_id}")
    assert r.status_code == 409 and error_code(r) == "last_owner"
    # Same in the personal org.
    r = await ada.client.delete(f"/v1/orgs/{ada.org_id}/members/{ada.user_id}")
    assert r.status_code == 409 and error_code(r) == "last_owner"
    # Nothing changed.
    roles = {m["email"]: m["role"] for m in (await ada.client.get(members)).json()["data"]}
    assert roles == {"ada@example.com": "owner", "adm@example.com": "admin"}


async def test_remove_and_leave(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    admin = await orgs.join(team, "adm@example.com", "admin")
    bob = await orgs.join(team, "bob@example.com", "member")
    carol = await orgs.join(team, "carol@example.com", "viewer")
    members = f"/v1/orgs/{team.id}/members"

    # A member cannot remove someone else, but can leave.
    r = await bob.client.delete(f"{members}/{carol.user_id}")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await carol.client.delete(f"{members}/{carol.user_id}")
    assert r.status_code == 204
    assert (await carol.client.get(f"/v1/orgs/{team.id}")).status_code == 404
    assert [o["id"] for o in (await carol.client.get("/v1/orgs")).json()["data"]] == [carol.org_id]
    # An admin removes a member; removing them again is 404.
    r = await admin.client.delete(f"{members}/{bob.user_id}")
    assert r.status_code == 204
    r = await admin.client.delete(f"{members}/{bob.user_id}")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await bob.client.get(members)
    assert r.status_code == 404
    emails = {m["email"] for m in (await ada.client.get(members)).json()["data"]}
    assert emails == {"ada@example.com", "adm@example.com"}
    actions = await audit_actions(ada.client, team.id)
    assert "member.left" in actions and "member.removed" in actions


async def test_unknown_or_malformed_member_ids_are_404(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    stranger = await orgs.person("zed@example.com")
    members = f"/v1/orgs/{team.id}/members"
    for user_id in ("nope", "inst_00000000000000000000000000", stranger.user_id):
        r = await ada.client.patch(f"{members}/{user_id}", json={"role": "viewer"})
        assert r.status_code == 404 and error_code(r) == "not_found", user_id
        r = await ada.client.delete(f"{members}/{user_id}")
        assert r.status_code == 404 and error_code(r) == "not_found", user_id


async def test_losing_a_role_revokes_api_keys_it_no_longer_allows(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "admin")
    bob.client.headers["X-Forkyard-Org"] = team.id
    admin_key = await make_api_key(bob.client, ["read", "write", "admin"], name="admin")
    read_key = await make_api_key(bob.client, ["read"], name="read")
    bearer_admin, bearer_read = orgs.new_client(), orgs.new_client()
    bearer_admin.headers["Authorization"] = f"Bearer {admin_key}"
    bearer_read.headers["Authorization"] = f"Bearer {read_key}"
    assert (await bearer_admin.get(f"/v1/orgs/{team.id}/members")).status_code == 200

    r = await ada.client.patch(f"/v1/orgs/{team.id}/members/{bob.user_id}", json={"role": "viewer"})
    assert r.status_code == 200
    r = await bearer_admin.get(f"/v1/orgs/{team.id}/members")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert (await bearer_read.get(f"/v1/orgs/{team.id}/members")).status_code == 200

    r = await ada.client.delete(f"/v1/orgs/{team.id}/members/{bob.user_id}")
    assert r.status_code == 204
    r = await bearer_read.get(f"/v1/orgs/{team.id}/members")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


async def test_api_keys_act_as_admins_never_as_owners(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "member")
    ada.client.headers["X-Forkyard-Org"] = team.id
    key = await make_api_key(ada.client, ["read", "write", "admin"])
    bearer = orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {key}"
    members = f"/v1/orgs/{team.id}/members"
    r = await bearer.patch(f"{members}/{bob.user_id}", json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    r = await bearer.patch(f"{members}/{bob.user_id}", json={"role": "owner"})
    assert r.status_code == 403 and error_code(r) == "owner_required"
    # A read-only key lists but changes nothing.
    ro = await make_api_key(ada.client, ["read"], name="ro")
    reader = orgs.new_client()
    reader.headers["Authorization"] = f"Bearer {ro}"
    assert (await reader.get(members)).status_code == 200
    r = await reader.delete(f"{members}/{bob.user_id}")
    assert r.status_code == 403 and error_code(r) == "forbidden"


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "owner")
    members = f"/v1/orgs/{team.id}/members"
    results = await asyncio.gather(
        ada.client.patch(f"{members}/{bob.user_id}", json={"role": "admin"}),
        bob.client.patch(f"{members}/{ada.user_id}", json={"role": "admin"}),
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    assert [error_code(r) for r in results if r.status_code == 409] == ["last_owner"]
    roles = [m["role"] for m in (await ada.client.get(members)).json()["data"]]
    assert sorted(roles) == ["admin", "owner"]


async def test_two_owners_deleting_their_accounts_at_once_leave_one_owner(orgs):
    # Account deletion keeps the last-owner rule under the same org lock as a demotion: without
    # the lock both deletions counted two owners and the org was left with none.
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "owner")
    for person in (ada, bob):
        r = await person.client.post("/v1/auth/sudo", json={"password": PASSWORD})
        assert r.status_code == 200, r.text
    results = await asyncio.gather(
        ada.client.delete("/v1/auth/me"), bob.client.delete("/v1/auth/me")
    )
    assert sorted(r.status_code for r in results) == [204, 409]
    refused = next(r for r in results if r.status_code == 409)
    assert error_code(refused) == "last_owner"
    assert refused.json()["error"]["details"]["org_id"] == team.id
    survivor = ada if results[0].status_code == 409 else bob
    members = (await survivor.client.get(f"/v1/orgs/{team.id}/members")).json()["data"]
    assert [(m["user_id"], m["role"]) for m in members] == [(survivor.user_id, "owner")]
