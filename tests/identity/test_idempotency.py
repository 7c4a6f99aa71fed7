"""Idempotency-Key: the same key and body replay the first response without doing the work
again; another body is 409; keys are per caller; nothing secret is kept in the clear."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from forkyard.identity.models import ApiKey
from forkyard.kit.clock import clock
from tests.helpers import error_code, make_account, make_api_key


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
    await make_account(client, "idem3@example.com")
    headers = {"Idempotency-Key": "bad-1"}
    first = await client.post("/v1/api-keys", json={"name": ""}, headers=headers)
    again = await client.post("/v1/api-keys", json={"name": ""}, headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.headers.get("idempotent-replayed") == "true"
    too_long = await client.post("/v1/auth/signup", json={}, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 400 and error_code(too_long) == "bad_request"


async def _records(db) -> int:  # type: ignore[no-untyped-def]
    async with db.sessions() as session:
        return int(
            (await session.execute(text("SELECT count(*) FROM idempotency_records"))).scalar_one()
        )


async def test_a_replay_goes_only_to_a_caller_who_is_still_authenticated(client, new_client, db):
    await make_account(client, "idem4@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bot = new_client()
    bot.headers["Authorization"] = f"Bearer {key}"
    headers = {"Idempotency-Key": "mint-1"}
    first = await bot.post("/v1/api-keys", json={"name": "child"}, headers=headers)
    assert first.status_code == 201
    # Someone who saw the Idempotency-Key but holds another (or no valid) credential.
    for credential in ("fy_" + "x" * 40, "garbage"):
        stranger = new_client("10.99.0.1")
        r = await stranger.post(
            "/v1/api-keys",
            json={"name": "child"},
            headers={**headers, "Authorization": f"Bearer {credential}"},
        )
        assert r.status_code == 401 and first.json()["key"] not in r.text
    # The key is revoked: its old answer (with a secret in it) is not handed out again.
    key_id = next(
        k["id"]
        for k in (await client.get("/v1/api-keys")).json()["data"]
        if key.startswith(k["prefix"])
    )
    assert (await client.delete(f"/v1/api-keys/{key_id}")).status_code == 204
    r = await bot.post("/v1/api-keys", json={"name": "child"}, headers=headers)
    assert r.status_code == 401 and first.json()["key"] not in r.text
    # A session that ended is no longer its user either.
    made = await client.post("/v1/api-keys", json={"name": "s"}, headers={"Idempotency-Key": "s-1"})
    assert made.status_code == 201
    assert (await client.post("/v1/auth/logout")).status_code == 204
    r = await client.post("/v1/api-keys", json={"name": "s"}, headers={"Idempotency-Key": "s-1"})
    assert r.status_code == 401 and made.json()["key"] not in r.text


async def test_nothing_is_stored_before_authentication(client, new_client, db):
    headers = {"Idempotency-Key": "pre-auth"}
    r = await new_client().post(
        "/v1/api-keys", json={"name": "x"}, headers={**headers, "Authorization": "Bearer fy_nope"}
    )
    assert r.status_code == 401
    r = await new_client().post("/v1/api-keys", json={"name": "x"}, headers=headers)
    assert r.status_code == 401
    await client.post(
        "/v1/auth/signup",
        json={"email": "anon@example.com", "password": "a fine long password 1", "name": "A"},
        headers=headers,
    )
    assert await _records(db) == 0


async def test_records_expire(client, db, settings):
    from forkyard.jobs.worker import Worker
    from forkyard.tasks import load_all_tasks

    await make_account(client, "idem5@example.com")
    # A key, not the browser: its access cookie would expire long before the records do.
    key = await make_api_key(client, ["read", "write", "account"])
    client.cookies.clear()
    client.headers["Authorization"] = f"Bearer {key}"
    headers = {"Idempotency-Key": "old"}
    first = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    clock.advance(timedelta(hours=24, seconds=1))
    # Past the window the key does the work again ...
    second = await client.post("/v1/api-keys", json={"name": "ci"}, headers=headers)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers
    # ... and the sweep deletes what is past it.
    await client.post("/v1/api-keys", json={"name": "other"}, headers={"Idempotency-Key": "b"})
    clock.advance(timedelta(hours=24, seconds=1))
    load_all_tasks()
    await Worker(db, settings).run_periodic_now()
    assert await _records(db) == 0


async def test_concurrent_requests_with_one_key_do_the_work_once(client, new_client, db):
    """The claim is one statement: of several identical requests at once, one does the work and
    the others are told it is running or get its answer, never a second API key."""
    import asyncio

    await make_account(client, "idem6@example.com")
    key = await make_api_key(client, ["read", "write", "account"])
    bots = [new_client() for _ in range(6)]
    for bot in bots:
        bot.headers["Authorization"] = f"Bearer {key}"
    before = await _count_keys(db)
    answers = await asyncio.gather(
        *(
            bot.post("/v1/api-keys", json={"name": "once"}, headers={"Idempotency-Key": "race"})
            for bot in bots
        )
    )
    assert await _count_keys(db) == before + 1
    made = [r for r in answers if r.status_code == 201]
    assert made and len({r.json()["id"] for r in made}) == 1
    waiting = [r for r in answers if r.status_code != 201]
    assert all(r.status_code == 409 and error_code(r) == "idempotency_in_progress" for r in waiting)
    # Afterwards the key replays the one answer.
    again = await bots[0].post(
        "/v1/api-keys", json={"name": "once"}, headers={"Idempotency-Key": "race"}
    )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == made[0].json()["id"]
