"""The hot-path caches stay honest: a change made anywhere (another API process, a worker, an
operator in psql) reaches every process's cache through the database's announcements, and a
process that cannot hear them caches nothing (db/changes.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text

from forkyard.db.changes import ListenedCache, changes
from tests.helpers import error_code, make_account, make_api_key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused_within(client: Any, key: str, seconds: float) -> float:
    """Seconds until the key is refused (fails the test if it still works after `seconds`)."""
    started = time.monotonic()
    while True:
        r = await client.get("/v1/auth/me", headers=bearer(key))
        if r.status_code != 200:
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "the key still works"
        await asyncio.sleep(0.01)


async def listening() -> None:
    for _ in range(500):
        if all(cache.listening for cache in changes.caches.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the change feed did not connect")


async def test_a_key_revoked_elsewhere_stops_working_within_a_second(client, new_client, db):
    await make_account(client, "feed1@example.com")
    key = await make_api_key(client)
    await listening()
    api = new_client()
    for _ in range(3):  # looked up once, then served from the cache
        assert (await api.get("/v1/auth/me", headers=bearer(key))).status_code == 200
    # Revoked by another process: this one hears of it only through the announcement.
    async with db.transaction() as session:
        await session.execute(text("UPDATE api_keys SET revoked_at = now()"))
    assert await refused_within(api, key, 1.0) < 1.0
    r = await api.get("/v1/auth/me", headers=bearer(key))
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


async def test_an_allowlist_added_elsewhere_applies_within_a_second(client, new_client, db):
    acct = await make_account(client, "feed2@example.com")
    key = await make_api_key(client)
    await listening()
    api = new_client("10.9.9.9")
    assert (await api.get("/v1/auth/me", headers=bearer(key))).status_code == 200
    async with db.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO ip_allowlist_entries (id, org_id, cidr, description, created_at)"
                " VALUES ('ipa_feedtest', :org, '192.0.2.0/24', '', now())"
            ),
            {"org": acct.org_id},
        )
    await refused_within(api, key, 1.0)
    r = await api.get("/v1/auth/me", headers=bearer(key))
    assert r.status_code == 403 and error_code(r) == "ip_not_allowed"


async def test_a_process_that_loses_its_listener_caches_nothing(client, new_client, db):
    await make_account(client, "feed3@example.com")
    key = await make_api_key(client)
    await listening()
    api = new_client()
    assert (await api.get("/v1/auth/me", headers=bearer(key))).status_code == 200
    async with db.transaction() as session:
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN forkyard_%' AND pid <> pg_backend_pid()"
            )
        )
    for _ in range(500):
        if not any(cache.listening for cache in changes.caches.values()):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the lost listener went unnoticed")
    # Changed while nobody listens: the key must be refused all the same.
    async with db.transaction() as session:
        await session.execute(text("UPDATE api_keys SET revoked_at = now()"))
    r = await api.get("/v1/auth/me", headers=bearer(key))
    assert r.status_code == 401
    await listening()  # and the feed comes back by itself


def test_cache_answers_only_while_listening_and_within_its_ttl():
    cache: ListenedCache[str] = ListenedCache("test_channel", ttl_s=0.05)
    cache.put("a", "1", cache.generation)
    assert cache.get("a") is None  # not listening: nothing was stored
    cache.listening = True
    cache.put("a", "1", cache.generation)
    assert cache.get("a") == "1"
    time.sleep(0.06)
    assert cache.get("a") is None  # past its TTL
    cache.put("a", "1", cache.generation)
    cache.listening = False
    assert cache.get("a") is None


def test_a_lookup_that_raced_a_change_is_not_stored():
    cache: ListenedCache[str] = ListenedCache("test_channel", ttl_s=30)
    cache.listening = True
    began = cache.generation  # a lookup starts ...
    cache.forget("other")  # ... a change is announced meanwhile ...
    cache.put("a", "stale", began)  # ... and what the lookup read is not kept
    assert cache.get("a") is None
    cache.put("b", "1", cache.generation)
    cache.put("c", "2", cache.generation)
    cache.forget("b")
    assert cache.get("b") is None and cache.get("c") == "2"
    cache.forget()
    assert cache.get("c") is None
