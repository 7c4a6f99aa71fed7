"""GET /v1/users/{id}: public profiles, only of people who share an org with the caller."""

from __future__ import annotations

from tests.helpers import error_code, last_link, make_account, make_api_key


async def test_profiles_visible_only_within_a_shared_org(client, new_client, settings, run_jobs):
    alice = await make_account(client, "alice@example.com")
    bob = await make_account(new_client(), "bob@example.com")
    carol = await make_account(new_client(), "carol@example.com")

    # Strangers: 404, exactly like an id that does not exist.
    r = await client.get(f"/v1/users/{bob.user_id}")
    assert r.status_code == 404 and error_code(r) == "not_found"
    missing = await client.get("/v1/users/usr_00000000000000000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for bad in ("org_00000000000000000000000000", "usr_", "x"):
        assert (await client.get(f"/v1/users/{bad}")).status_code == 404

    # Alice invites Bob to a team org; now they see each other, Carol still sees neither.
    team = await client.post("/v1/orgs", json={"name": "Team"})
    assert team.status_code == 201, team.text
    r = await client.post(
        f"/v1/orgs/{team.json()['id']}/invitations", json={"email": bob.email, "role": "member"}
    )
    assert r.status_code == 201, r.text
    await run_jobs()
    token = last_link(settings, bob.email, r"/v1/auth/invitations/([A-Za-z0-9_\-]+)")
    assert (await bob.client.post(f"/v1/auth/invitations/{token}/accept")).status_code == 200

    seen = await client.get(f"/v1/users/{bob.user_id}")
    assert seen.status_code == 200
    assert set(seen.json()) == {"id", "name", "email", "created_at"}
    assert (await bob.client.get(f"/v1/users/{alice.user_id}")).status_code == 200
    assert (await carol.client.get(f"/v1/users/{alice.user_id}")).status_code == 404
    assert (await client.get(f"/v1/users/{alice.user_id}")).status_code == 200  # oneself


async def test_api_key_sees_only_members_of_its_own_org(client, new_client, settings, run_jobs):
    alice = await make_account(client, "al@example.com")
    bob = await make_account(new_client(), "bo@example.com")
    team = (await client.post("/v1/orgs", json={"name": "T"})).json()["id"]
    r = await client.post(f"/v1/orgs/{team}/invitations", json={"email": bob.email})
    assert r.status_code == 201
    await run_jobs()
    token = last_link(settings, bob.email, r"/v1/auth/invitations/([A-Za-z0-9_\-]+)")
    assert (await bob.client.post(f"/v1/auth/invitations/{token}/accept")).status_code == 200
    # A key for Alice's personal org acts for that org only: Bob is not in it.
    key = await make_api_key(client)
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    assert (await bot.get(f"/v1/users/{bob.user_id}")).status_code == 404
    assert (await bot.get(f"/v1/users/{alice.user_id}")).status_code == 200
