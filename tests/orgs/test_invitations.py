"""Invitations end to end through the outbox: preview, accept, expiry, revocation, mismatch."""

from __future__ import annotations

from datetime import timedelta

from forkyard.kit.clock import clock
from forkyard.tenants.models import Membership
from tests.helpers import error_code, last_link, login, make_api_key, outbox
from tests.orgs.conftest import INVITE_LINK, audit_actions


async def test_invitation_end_to_end(orgs, settings):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada, "Acme")
    inv_id, token = await orgs.invite(ada.client, team.id, "bob@example.com", "admin")
    mail = [m for m in outbox(settings) if m["To"] == "bob@example.com"][-1]
    assert "Acme" in mail["Subject"]
    assert f"http://testserver/v1/auth/invitations/{token}" in mail.get_content()

    pending = (await ada.client.get(f"/v1/orgs/{team.id}/invitations")).json()
    assert set(pending) == {"data", "next_cursor"}
    assert [(i["id"], i["email"], i["role"], i["invited_by"]) for i in pending["data"]] == [
        (inv_id, "bob@example.com", "admin", ada.user_id)
    ]
    assert "token" not in pending["data"][0] and "token_hash" not in pending["data"][0]

    # The link needs a signed-in user.
    anonymous = orgs.new_client()
    r = await anonymous.get(f"/v1/auth/invitations/{token}")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"

    bob = await orgs.person("bob@example.com")
    preview = await bob.client.get(f"/v1/auth/invitations/{token}")
    assert preview.status_code == 200
    body = preview.json()
    assert body["org_id"] == team.id and body["org_name"] == "Acme"
    assert body["role"] == "admin" and body["email"] == "bob@example.com"
    assert body["inviter"] == {"id": ada.user_id, "name": "Test", "email": "ada@example.com"}
    assert body["expires_at"].endswith("Z") or "+00:00" in body["expires_at"]

    r = await bob.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 200
    assert r.json()["id"] == team.id and r.json()["role"] == "admin"
    listed = {o["id"]: o["role"] for o in (await bob.client.get("/v1/orgs")).json()["data"]}
    assert listed == {bob.org_id: "owner", team.id: "admin"}
    assert (await ada.client.get(f"/v1/orgs/{team.id}/invitations")).json()["data"] == []

    again = await bob.client.post(f"/v1/auth/invitations/{token}/accept")
    assert again.status_code == 409 and error_code(again) == "invitation_used"
    r = await ada.client.delete(f"/v1/orgs/{team.id}/invitations/{inv_id}")
    assert r.status_code == 409 and error_code(r) == "invitation_used"
    actions = await audit_actions(ada.client, team.id)
    assert "invitation.created" in actions and "invitation.accepted" in actions


async def test_expired_invitation_is_refused(orgs, settings):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.person("bob@example.com")
    _, token = await orgs.invite(ada.client, team.id, "bob@example.com")
    clock.advance(timedelta(seconds=settings.invitation_ttl_s + 1))
    await login(bob.client, bob.email)  # the old session's cookies expired too
    await login(ada.client, ada.email)
    for r in (
        await bob.client.get(f"/v1/auth/invitations/{token}"),
        await bob.client.post(f"/v1/auth/invitations/{token}/accept"),
    ):
        assert r.status_code == 410 and error_code(r) == "invitation_expired"
    assert (await ada.client.get(f"/v1/orgs/{team.id}/invitations")).json()["data"] == []
    assert (await bob.client.get(f"/v1/orgs/{team.id}")).status_code == 404


async def test_invitation_just_before_expiry_still_works(orgs, settings):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.person("bob@example.com")
    _, token = await orgs.invite(ada.client, team.id, "bob@example.com")
    clock.advance(timedelta(seconds=settings.invitation_ttl_s - 60))
    await login(bob.client, bob.email)
    r = await bob.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 200


async def test_revoked_and_superseded_invitations_are_refused(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.person("bob@example.com")
    inv_id, token = await orgs.invite(ada.client, team.id, "bob@example.com")
    r = await ada.client.delete(f"/v1/orgs/{team.id}/invitations/{inv_id}")
    assert r.status_code == 204
    r = await bob.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 410 and error_code(r) == "invitation_revoked"
    assert "invitation.revoked" in await audit_actions(ada.client, team.id)

    # Inviting the same address again replaces the pending invitation.
    _, first = await orgs.invite(ada.client, team.id, "bob@example.com", "viewer")
    _, second = await orgs.invite(ada.client, team.id, "bob@example.com", "member")
    assert first != second
    pending = (await ada.client.get(f"/v1/orgs/{team.id}/invitations")).json()["data"]
    assert [i["role"] for i in pending] == ["member"]
    r = await bob.client.post(f"/v1/auth/invitations/{first}/accept")
    assert r.status_code == 410 and error_code(r) == "invitation_revoked"
    r = await bob.client.post(f"/v1/auth/invitations/{second}/accept")
    assert r.status_code == 200 and r.json()["role"] == "member"


async def test_unknown_token_is_404(orgs):
    bob = await orgs.person("bob@example.com")
    for path in ("/v1/auth/invitations/nope", "/v1/auth/invitations/nope/accept"):
        r = await (bob.client.get(path) if path.endswith("nope") else bob.client.post(path))
        assert r.status_code == 404 and error_code(r) == "not_found"


async def test_email_must_match_but_domain_case_does_not_matter(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    mallory = await orgs.person("mallory@example.com")
    r = await ada.client.post(
        f"/v1/orgs/{team.id}/invitations", json={"email": "bob@EXAMPLE.com", "role": "member"}
    )
    assert r.status_code == 201 and r.json()["email"] == "bob@example.com"
    await orgs.run_jobs()
    token = last_link(orgs.settings, "bob@example.com", INVITE_LINK)
    r = await mallory.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 403 and error_code(r) == "invitation_email_mismatch"
    assert (await mallory.client.get(f"/v1/orgs/{team.id}")).status_code == 404
    bob = await orgs.person("bob@Example.Com")
    r = await bob.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 200
    # The local part is compared exactly: only the domain is case-insensitive.
    _, token = await orgs.invite(ada.client, team.id, "Carol@example.com")
    carol = await orgs.person("carol@example.com")
    r = await carol.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 403 and error_code(r) == "invitation_email_mismatch"


async def test_api_keys_cannot_accept(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.person("bob@example.com")
    _, token = await orgs.invite(ada.client, team.id, "bob@example.com")
    bearer = orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {await make_api_key(bob.client)}"
    r = await bearer.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 403 and error_code(r) == "cookie_session_required"


async def test_already_a_member(orgs, db):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    await orgs.join(team, "bob@example.com")
    r = await ada.client.post(
        f"/v1/orgs/{team.id}/invitations", json={"email": "bob@example.com", "role": "admin"}
    )
    assert r.status_code == 409 and error_code(r) == "already_member"
    # Joining by another path while an invitation is pending.
    carol = await orgs.person("carol@example.com")
    _, token = await orgs.invite(ada.client, team.id, "carol@example.com")
    async with db.transaction() as session:
        session.add(Membership(org_id=team.id, user_id=carol.user_id, role="viewer"))
    r = await carol.client.post(f"/v1/auth/invitations/{token}/accept")
    assert r.status_code == 409 and error_code(r) == "already_member"


async def test_who_may_invite_and_where(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    admin = await orgs.join(team, "adm@example.com", "admin")
    member = await orgs.join(team, "mem@example.com", "member")
    url = f"/v1/orgs/{team.id}/invitations"
    r = await member.client.post(url, json={"email": "x@example.com"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await member.client.get(url)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = await admin.client.post(url, json={"email": "x@example.com", "role": "owner"})
    assert r.status_code == 403 and error_code(r) == "owner_required"
    r = await admin.client.post(url, json={"email": "x@example.com", "role": "viewer"})
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    r = await ada.client.post(url, json={"email": "y@example.com", "role": "owner"})
    assert r.status_code == 201
    for bad in ({"email": "not-an-email"}, {"email": "z@example.com", "role": "god"}, {}):
        r = await ada.client.post(url, json=bad)
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
    r = await ada.client.post(f"/v1/orgs/{ada.org_id}/invitations", json={"email": "x@example.com"})
    assert r.status_code == 409 and error_code(r) == "personal_org"
    pending = (await admin.client.get(url)).json()["data"]
    assert sorted(i["email"] for i in pending) == ["x@example.com", "y@example.com"]
