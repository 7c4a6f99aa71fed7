"""The IP allowlist: IPv4 and IPv6 ranges, normalisation, the lockout guard, and enforcement on
other routes from real client addresses."""

from __future__ import annotations

from tests.helpers import error_code, login, make_api_key
from tests.orgs.conftest import audit_actions

URL = "/v1/orgs/me/ip-allowlist"


async def test_ranges_are_validated_and_normalised(orgs):
    ada = await orgs.person("ada@example.com", ip="10.1.2.3")
    cases = [
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:DB8::1/32", "2001:db8::/32"),
        ("2001:db8:0:0::5", "2001:db8::5/128"),
    ]
    for given, stored in cases:
        r = await ada.client.post(URL, json={"cidr": given, "description": "office"})
        assert r.status_code == 201, (given, r.text)
        assert r.json()["cidr"] == stored and r.json()["description"] == "office"
    for bad in ("10.0.0.0/33", "300.1.1.1", "nope", "::/129", "", "1.2.3.4/24/1", "fe80::1%eth0"):
        r = await ada.client.post(URL, json={"cidr": bad})
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
        assert r.json()["error"]["details"]["fields"][0]["loc"] == ["body", "cidr"]
    dup = await ada.client.post(URL, json={"cidr": "10.9.9.9/8"})
    assert dup.status_code == 409 and error_code(dup) == "allowlist_entry_exists"
    listed = (await ada.client.get(URL)).json()
    assert set(listed) == {"data", "next_cursor"}
    assert [e["cidr"] for e in listed["data"]] == [s for _, s in reversed(cases)]


async def test_first_entry_that_excludes_you_needs_confirmation(orgs):
    ada = await orgs.person("ada@example.com", ip="198.51.100.20")
    r = await ada.client.post(URL, json={"cidr": "203.0.113.0/24"})
    assert r.status_code == 409 and error_code(r) == "would_lock_out"
    assert r.json()["error"]["details"]["your_ip"] == "198.51.100.20"
    assert (await ada.client.get(URL)).json()["data"] == []  # nothing half-made
    r = await ada.client.post(URL, json={"cidr": "198.51.100.0/24"})
    assert r.status_code == 201
    # Once you are on the list, more ranges only widen it.
    r = await ada.client.post(URL, json={"cidr": "203.0.113.0/24"})
    assert r.status_code == 201


async def test_confirmed_lockout_takes_effect(orgs):
    ada = await orgs.person("ada@example.com", ip="198.51.100.20")
    r = await ada.client.post(URL, json={"cidr": "203.0.113.0/24", "confirm_lockout": True})
    assert r.status_code == 201
    r = await ada.client.get("/v1/auth/me")
    assert r.status_code == 403 and error_code(r) == "ip_not_allowed"
    # From an allowed address the same account works.
    ada_office = orgs.new_client(ip="203.0.113.50")
    await login(ada_office, ada.email)
    assert (await ada_office.get("/v1/auth/me")).status_code == 200
    assert [e["cidr"] for e in (await ada_office.get(URL)).json()["data"]] == ["203.0.113.0/24"]


async def test_enforced_for_api_keys_from_ipv4_and_ipv6(orgs):
    ada = await orgs.person("ada@example.com")
    key = await make_api_key(ada.client, ["read"])
    assert (await ada.client.post(URL, json={"cidr": "127.0.0.1"})).status_code == 201
    assert (await ada.client.post(URL, json={"cidr": "203.0.113.0/24"})).status_code == 201
    assert (await ada.client.post(URL, json={"cidr": "2001:db8:abcd::/48"})).status_code == 201

    async def me_from(ip: str) -> int:
        c = orgs.new_client(ip=ip)
        c.headers["Authorization"] = f"Bearer {key}"
        r = await c.get("/v1/auth/me")
        if r.status_code == 403:
            assert error_code(r) == "ip_not_allowed"
        return r.status_code

    assert await me_from("203.0.113.9") == 200
    assert await me_from("2001:db8:abcd:12::1") == 200
    assert await me_from("198.51.100.7") == 403
    assert await me_from("203.0.114.1") == 403
    assert await me_from("2001:db8:abce::1") == 403
    assert await me_from("::ffff:198.51.100.7") == 403


async def test_removing_entries_and_the_guard_on_removal(orgs):
    ada = await orgs.person("ada@example.com", ip="2001:db8::10")
    mine = (await ada.client.post(URL, json={"cidr": "2001:db8::/64"})).json()
    other = (await ada.client.post(URL, json={"cidr": "192.0.2.0/24"})).json()
    # Removing the range that admits you, while others remain, would lock you out.
    r = await ada.client.delete(f"{URL}/{mine['id']}")
    assert r.status_code == 409 and error_code(r) == "would_lock_out"
    assert (await ada.client.delete(f"{URL}/{other['id']}")).status_code == 204
    # Removing the last entry empties the list, which allows everyone.
    assert (await ada.client.delete(f"{URL}/{mine['id']}")).status_code == 204
    assert (await ada.client.get(URL)).json()["data"] == []
    for bad in (mine["id"], "ipa_nope", "inst_00000000000000000000000000"):
        r = await ada.client.delete(f"{URL}/{bad}")
        assert r.status_code == 404 and error_code(r) == "not_found"
    actions = await audit_actions(ada.client, ada.org_id)
    assert actions.count("ip_allowlist.added") == 2 and actions.count("ip_allowlist.removed") == 2


async def test_confirmed_removal_locks_you_out(orgs):
    ada = await orgs.person("ada@example.com", ip="192.0.2.5")
    mine = (await ada.client.post(URL, json={"cidr": "192.0.2.0/24"})).json()
    await ada.client.post(URL, json={"cidr": "203.0.113.0/24"})
    r = await ada.client.delete(f"{URL}/{mine['id']}", params={"confirm_lockout": "true"})
    assert r.status_code == 204
    r = await ada.client.get(URL)
    assert r.status_code == 403 and error_code(r) == "ip_not_allowed"


async def test_allowlist_is_for_admins_of_the_acting_org(orgs):
    ada = await orgs.person("ada@example.com")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "member")
    # Bob's own personal org: he is its owner.
    assert (await bob.client.get(URL)).status_code == 200
    # Acting for the team as a member: not allowed.
    bob.client.headers["X-Forkyard-Org"] = team.id
    for r in (
        await bob.client.get(URL),
        await bob.client.post(URL, json={"cidr": "127.0.0.1"}),
    ):
        assert r.status_code == 403 and error_code(r) == "forbidden"
    # A key without the admin scope is refused too.
    ada_key = await make_api_key(ada.client, ["read", "write"])
    bearer = orgs.new_client()
    bearer.headers["Authorization"] = f"Bearer {ada_key}"
    r = await bearer.post(URL, json={"cidr": "127.0.0.1"})
    assert r.status_code == 403 and error_code(r) == "forbidden"


async def test_team_allowlist_is_enforced_when_the_path_names_the_team(orgs):
    ada = await orgs.person("ada@example.com", ip="203.0.113.1")
    team = await orgs.team(ada)
    bob = await orgs.join(team, "bob@example.com", "member")  # signs in from 127.0.0.1
    r = await ada.client.post(
        URL, json={"cidr": "203.0.113.0/24"}, headers={"X-Forkyard-Org": team.id}
    )
    assert r.status_code == 201
    # Bob acts for his personal org by default, but the path names the team.
    for path in (f"/v1/orgs/{team.id}", f"/v1/orgs/{team.id}/members"):
        r = await bob.client.get(path)
        assert r.status_code == 403 and error_code(r) == "ip_not_allowed", path
    r = await bob.client.get("/v1/orgs/me/ip-allowlist", headers={"X-Forkyard-Org": team.id})
    assert r.status_code == 403 and error_code(r) == "ip_not_allowed"
    # His personal org has no list, so the rest of his account still works.
    assert (await bob.client.get("/v1/auth/me")).status_code == 200
    assert (await ada.client.get(f"/v1/orgs/{team.id}/members")).status_code == 200
