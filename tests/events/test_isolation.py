"""The Events API is per org: another org's events are in no list and each one is a 404
`not_found` by id, exactly like an id that does not exist."""

from __future__ import annotations

from tests.helpers import error_code, make_account, make_api_key


async def test_another_orgs_events_are_not_found(client, new_client):
    await make_account(client, "ada@example.com")
    await make_api_key(client, name="ci")  # api_key.created, besides user.signed_in
    ours = (await client.get("/v1/events")).json()["data"]
    assert {"user.signed_in", "api_key.created"} <= {e["type"] for e in ours}
    event_id = ours[0]["id"]
    assert (await client.get(f"/v1/events/{event_id}")).json()["id"] == event_id

    zed = new_client()
    await make_account(zed, "zed@example.com")
    theirs = (await zed.get("/v1/events")).json()["data"]
    assert theirs and not {e["id"] for e in ours} & {e["id"] for e in theirs}
    filtered = await zed.get("/v1/events", params={"type": "api_key."})
    assert filtered.json()["data"] == []
    for missing in (event_id, "evt_00000000000000000000000000", "not-an-id"):
        r = await zed.get(f"/v1/events/{missing}")
        assert r.status_code == 404 and error_code(r) == "not_found", (missing, r.text)
