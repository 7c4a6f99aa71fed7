"""Health probes: live is free, ready names the failing check (worker heartbeat, database),
startup reports when the app finished starting."""

from __future__ import annotations

from datetime import timedelta

from forkyard.jobs.worker import Worker
from forkyard.kit.clock import clock
from tests.helpers import error_code


async def test_live_is_cheap_and_always_ok(client, app):
    r = await client.get("/health/live")
    assert r.status_code == 200 and r.json() == {"status": "ok", "checks": {}}
    # It touches nothing: with the database gone it still answers.
    await app.state.db.dispose()
    app.state.db = None
    assert (await client.get("/health/live")).status_code == 200


async def test_ready_is_503_without_a_worker_heartbeat(client):
    r = await client.get("/health/ready")
    assert r.status_code == 503 and error_code(r) == "not_ready"
    details = r.json()["error"]["details"]
    assert details["failing"] == ["worker"]
    assert details["checks"]["database"]["ok"] and details["checks"]["migrations"]["ok"]
    assert "worker" in r.json()["error"]["message"]


async def test_ready_once_a_worker_beats_and_503_when_it_goes_stale(client, db, settings):
    await Worker(db, settings).heartbeat()
    r = await client.get("/health/ready")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok" and r.json()["checks"]["worker"]["ok"] is True
    assert (await client.get("/health")).status_code == 200
    clock.advance(timedelta(seconds=settings.worker_heartbeat_stale_s + 1))
    stale = await client.get("/health/ready")
    assert stale.status_code == 503 and stale.json()["error"]["details"]["failing"] == ["worker"]


async def test_ready_names_the_database_when_it_is_unreachable(client, app, settings):
    from forkyard.db.engine import Database

    await app.state.db.dispose()
    app.state.db = Database("postgresql://nobody:x@127.0.0.1:1/none", pool_size=1)
    try:
        r = await client.get("/health/ready")
    finally:
        await app.state.db.dispose()
    assert r.status_code == 503
    assert "database" in r.json()["error"]["details"]["failing"]
    assert "127.0.0.1" not in r.text  # nothing internal leaks


async def test_startup(client, app):
    assert (await client.get("/health/startup")).status_code == 200
    app.state.started = False
    r = await client.get("/health/startup")
    assert r.status_code == 503 and r.json()["error"]["details"]["failing"] == ["started"]
