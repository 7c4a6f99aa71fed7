"""Idempotency-Key: the same key and body replay the first response without doing the work
again; another body is 409; keys are per caller; nothing secret is kept in the clear."""

from __future__ import annotations

from sqlalchemy import func, select, text

from forkyard.identity.models import ApiKey
from tests.helpers import error_code, make_account


async def _count_keys(db) -> int:  # type: ignore[no-untyped-def]
    async with db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(ApiKey))).scalar_one())


async def test_same_key_and_body_replays_and_creates_once(client, db):
    await make_account(client, "idem@example.com")
    headers = {"Idempotency-Key": "create-key-1"}
    first = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    second = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert "x-request-id" in second.headers
    assert await _count_keys(db) == 1

    conflict = await client.post("/v1/api-keys", json={"name": "other"}, headers=headers)
    assert conflict.status_code == 409 and error_code(conflict) == "idempotency_conflict"
    assert await _count_keys(db) == 1

    # Without the header every POST does the work.
    await client.post("/v1/api-keys", json={"name": "ci"})
    assert await _count_keys(db) == 2


async def test_replayed_secrets_are_not_stored_in_the_clear(client, db):
    await make_account(client, "idem2@example.com")
    r = await client.post("/v1/api-keys", json={"name": "s"}, headers={"Idempotency-Key": "k"})
    secret = r.json()["key"]
    async with db.sessions() as session:
        stored = (
            await session.execute(
                text("SELECT string_agg(response_body, '') FROM idempotency_records")
            )
        ).scalar_one()
    assert stored and secret not in stored


async def test_keys_are_scoped_to_the_caller(client, new_client, db):
    await make_account(client, "ia@example.com")
    other = await make_account(new_client(), "ib@example.com")
    headers = {"Idempotency-Key": "same-key"}
    a = await client.post("/v1/api-keys", json={"name": "x"}, headers=headers)
    b = await other.client.post("/v1/api-keys", json={"name": "x"}, headers=headers)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and b.json()["org_id"] == other.org_id


async def test_failed_requests_replay_their_error_and_server_errors_do_not(client):
    headers = {"Idempotency-Key": "bad-1"}
    first = await client.post("/v1/auth/signup", json={"email": "x"}, headers=headers)
    again = await client.post("/v1/auth/signup", json={"email": "x"}, headers=headers)
    assert first.status_code == again.status_code == 422
    too_long = await client.post("/v1/auth/signup", json={}, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 400 and error_code(too_long) == "bad_request"
