"""exec.finished, against a real platform (API, worker, node and sandbox): every exec (plain,
streamed, timed out, killed by its client leaving) records one event with its exit status and
output sizes, never its output; the events API and its stream show it to the org and to no
other; a webhook for exec.finished receives it signed, once per exec; and the per-org "does
anyone listen" answer the hot path caches follows an endpoint enabled behind its back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy import func, select
from standardwebhooks import Webhook

from forkyard.config import Settings
from forkyard.db.engine import libpq_url
from forkyard.jobs.models import Job
from forkyard.kit.ids import id_floor
from forkyard.webhooks.models import WebhookDelivery
from tests.compute.conftest import create_running, signed_in
from tests.webhooks.conftest import Receiver, receiver  # noqa: F401

FAN_OUT = "webhooks.fan_out:exec.finished"


@pytest.fixture
def compute_settings(compute_settings: Settings) -> Settings:
    # The receiver listens on loopback.
    return compute_settings.model_copy(update={"webhooks_allow_private": True})


async def finished(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await api.get("/v1/events", params={"type": "exec.finished", "limit": 100, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def exec_ok(api: httpx.AsyncClient, iid: str, command: Any) -> dict[str, Any]:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def event_of(api: httpx.AsyncClient, exec_id: str) -> dict[str, Any]:
    """The exec's event: its record is closed beside the answer, so it may take a moment."""
    for _ in range(200):
        found = [e for e in await finished(api) if e["resource_id"] == exec_id]
        if found:
            assert len(found) == 1
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no exec.finished for {exec_id}")


async def fan_out_jobs(db: Any) -> int:
    async with db.transaction() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.name == "events.deliver", Job.payload["subscriber"].astext == FAN_OUT)
            )
            or 0
        )


async def test_every_exec_records_exec_finished_for_its_org_only(platform, compute_settings, db):
    api = platform.api
    iid = (await create_running(api))["id"]

    out = await exec_ok(api, iid, "printf 'secret-output'; echo err >&2; exit 3")
    event = await event_of(api, out["exec_id"])
    assert (event["type"], event["version"], event["resource_type"]) == ("exec.finished", 1, "exec")
    assert event["org_id"] == platform.org_id and event["actor"]["type"] == "api_key"
    assert event["payload"] == {
        "instance_id": iid,
        "status": "exited",
        "exit_code": 3,
        "duration_ms": out["duration_ms"],
        "signal": None,
        "streamed": False,
        "stdout_bytes": len("secret-output"),
        "stderr_bytes": len("err\n"),
        "truncated": False,
    }
    assert "secret-output" not in json.dumps(event)  # sizes, never contents

    # Timed out, and killed by a signal.
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "sleep 5", "timeout_s": 0.3})
    timed_out = await event_of(api, r.json()["exec_id"])
    assert timed_out["payload"]["status"] == "timed_out"
    out = await exec_ok(api, iid, "kill -9 $$")
    killed = await event_of(api, out["exec_id"])
    assert killed["payload"]["signal"] == out["signal"] == 9

    # Streamed: one event, with the sizes of what was streamed.
    async with aconnect_sse(
        api, "POST", f"/v1/instances/{iid}/exec/stream", json={"command": "echo hi; exit 4"}
    ) as source:
        frames = [sse async for sse in source.aiter_sse()]
    exec_id = json.loads(frames[0].data)["exec_id"]
    streamed = await event_of(api, exec_id)
    assert streamed["payload"]["streamed"] is True
    assert streamed["payload"]["exit_code"] == 4 and streamed["payload"]["stdout_bytes"] == 3

    # A streamed exec whose client leaves: its process is killed and the event says so.
    async with api.stream(
        "POST", f"/v1/instances/{iid}/exec/stream", json={"command": "echo go; sleep 30"}
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:") and "exec_id" in line:
                left_id = json.loads(line[5:])["exec_id"]
                break
    left = await event_of(api, left_id)
    assert left["payload"]["status"] == "killed" and left["payload"]["exit_code"] is None

    # One event per exec, and the history agrees on how each ended.
    history = (await api.get(f"/v1/instances/{iid}/exec")).json()["data"]
    events = await finished(api)
    assert sorted(e["resource_id"] for e in events) == sorted(h["id"] for h in history)
    by_id = {e["resource_id"]: e["payload"] for e in events}
    assert all(by_id[h["id"]]["status"] == h["status"] for h in history)

    # The org's live stream shows it (replayed from the start here).
    async with aconnect_sse(
        api, "GET", "/v1/events/stream", params={"type": "exec.finished"},
        headers={"Last-Event-ID": id_floor("evt", 0)},
    ) as source:  # fmt: skip
        first = await asyncio.wait_for(source.aiter_sse().__anext__(), 10)
    assert first.event == "exec.finished" and json.loads(first.data)["resource_type"] == "exec"

    # Nobody listens: no fan-out job was queued for any of them.
    assert await fan_out_jobs(db) == 0

    # Another org sees none of it, by list, by id or by stream.
    other, browser, _ = await signed_in(platform.url, "other@example.com", compute_settings, None)
    try:
        assert await finished(other) == []
        assert (await other.get(f"/v1/events/{event['id']}")).status_code == 404
    finally:
        await other.aclose()
        await browser.aclose()


async def test_a_webhook_for_exec_finished_gets_each_exec_once_signed(
    platform,
    db,
    receiver: Receiver,  # noqa: F811
):
    api = platform.api
    iid = (await create_running(api))["id"]
    r = await platform.browser.post(  # an admin (the API key has read, write)
        "/v1/webhooks", json={"url": receiver.url, "event_types": ["exec.finished"]}
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    # Disabled behind the API's back (a plain connection: no session in this process sees it),
    # so only the database's announcement can tell the API process's cache.
    async with await psycopg.AsyncConnection.connect(
        libpq_url(str(db.engine.url.render_as_string(hide_password=False))), autocommit=True
    ) as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET enabled = false WHERE id = %s", [hook["id"]]
        )
        await asyncio.sleep(1.0)  # tests/test_change_feed.py: announcements arrive within 1 s
        quiet = await exec_ok(api, iid, "true")
        await event_of(api, quiet["exec_id"])
        assert await fan_out_jobs(db) == 0

        await conn.execute(
            "UPDATE webhook_endpoints SET enabled = true WHERE id = %s", [hook["id"]]
        )
        await asyncio.sleep(1.0)
    heard = await exec_ok(api, iid, "echo heard; exit 2")
    event = await event_of(api, heard["exec_id"])

    for _ in range(500):  # the platform's own worker sends it
        if receiver.requests:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # time for a duplicate, were there one
    assert len(receiver.requests) == 1
    body = Webhook(hook["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert body["type"] == "exec.finished"
    assert body["data"]["id"] == event["id"] and body["data"]["payload"]["exit_code"] == 2
    assert await fan_out_jobs(db) == 1
    async with db.transaction() as s:
        rows = (await s.execute(select(WebhookDelivery))).scalars().all()
    assert [(d.event_id, d.status) for d in rows] == [(event["id"], "delivered")]
