"""The live streams over real HTTP (uvicorn), read as SSE by httpx-sse: a newly committed event
reaches an open stream, a reconnect with Last-Event-ID replays what it missed, another org's
stream sees nothing, keep-alives flow, and a client that leaves is let go."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from forkyard.config import Settings
from forkyard.db.announcements import _listeners
from forkyard.notifications.models import Notification
from tests.compute.conftest import signed_in
from tests.helpers import make_api_key


@pytest.fixture
def compute_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"run_worker_in_api": True, "events_stream_keepalive_s": 0.3})


class Reader:
    """An open stream, read into a queue by a task until closed."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def next(self, timeout: float = 5.0) -> ServerSentEvent:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def nothing_for(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(self.events.get(), seconds)
            raise AssertionError(f"unexpected event {got.event} {got.data}")


@contextlib.asynccontextmanager
async def reading(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Reader]:
    reader = Reader()

    async def run() -> None:
        async with aconnect_sse(
            client, "GET", path, params=params, headers=dict(headers or {})
        ) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            reader.opened.set()
            async for sse in source.aiter_sse():
                if sse.data:  # httpx-sse also yields an empty one for a keep-alive comment
                    await reader.events.put(sse)

    reader.task = asyncio.create_task(run())
    await asyncio.wait_for(reader.opened.wait(), 5)
    try:
        yield reader
    finally:
        reader.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader.task


async def key_id_named(api: httpx.AsyncClient, name: str) -> str:
    keys = (await api.get("/v1/api-keys")).json()["data"]
    return str(next(k["id"] for k in keys if k["name"] == name))


async def test_events_stream_live_resume_and_tenancy(control_plane, compute_settings, run_jobs):
    api, browser, org_id = await signed_in(
        control_plane, "streams@example.com", compute_settings, run_jobs
    )
    other_api, other_browser, other_org = await signed_in(
        control_plane, "elsewhere@example.com", compute_settings, run_jobs
    )
    try:
        async with (
            reading(api, "/v1/events/stream", type="api_key.") as mine,
            reading(api, "/v1/events/stream", type="api_key.revoked") as revoked_only,
            reading(other_api, "/v1/events/stream") as theirs,
        ):
            started = time.monotonic()
            await make_api_key(browser, name="first")
            first = await mine.next()
            latency = time.monotonic() - started
            assert first.event == "api_key.created"
            body = json.loads(first.data)
            assert first.id == body["id"] and body["org_id"] == org_id
            assert body["payload"]["name"] == "first"
            # The same event, as the events API shows it.
            assert (await api.get(f"/v1/events/{first.id}")).json() == body
            assert latency < 2.0, latency
            # Another org's stream, and a stream filtered to another type, see nothing of it.
            await theirs.nothing_for(0.5)
            await revoked_only.nothing_for(0.01)
            key_id = await key_id_named(api, "first")
            assert (await browser.delete(f"/v1/api-keys/{key_id}")).status_code == 204
            revoked = await revoked_only.next()
            assert (
                revoked.event == "api_key.revoked" and json.loads(revoked.data)["org_id"] == org_id
            )
            assert (await mine.next()).id == revoked.id
            await theirs.nothing_for(0.3)

        # While nobody listens, two more; a reconnect from `first` replays both, in order.
        await make_api_key(browser, name="second")
        await make_api_key(browser, name="third")
        async with reading(
            api, "/v1/events/stream", headers={"Last-Event-ID": first.id}, type="api_key."
        ) as again:
            replayed = [await again.next() for _ in range(3)]
            assert replayed[0].id == revoked.id
            names = [json.loads(e.data)["payload"].get("name") for e in replayed[1:]]
            assert names == ["second", "third"]
            # ...then the live ones.
            await make_api_key(browser, name="fourth")
            assert json.loads((await again.next()).data)["payload"]["name"] == "fourth"
        # The other org's own events reach only its stream.
        async with (
            reading(other_api, "/v1/events/stream") as theirs,
            reading(api, "/v1/events/stream") as mine,
        ):
            await make_api_key(other_browser, name="theirs")
            got = await theirs.next()
            assert json.loads(got.data)["org_id"] == other_org
            await mine.nothing_for(0.5)
    finally:
        for c in (api, browser, other_api, other_browser):
            await c.aclose()


async def test_keep_alives_and_a_client_that_leaves(control_plane, compute_settings, run_jobs, db):
    api, browser, _ = await signed_in(
        control_plane, "alive@example.com", compute_settings, run_jobs
    )
    try:
        lines: list[str] = []
        async with api.stream("GET", "/v1/events/stream") as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": keep-alive") >= 2:
                    break
        assert lines[0] == ": connected"
        # The server let go of the stream: nobody waits on the announcements any more.
        listener = _listeners[db.url]
        for _ in range(100):
            if not listener.waiting:
                break
            await asyncio.sleep(0.02)
        assert listener.waiting == {}
        # Unauthenticated: the ordinary 401, not a stream.
        async with httpx.AsyncClient(base_url=control_plane) as anonymous:
            r = await anonymous.get("/v1/events/stream")
            assert r.status_code == 401
    finally:
        await api.aclose()
        await browser.aclose()


async def test_notifications_stream_gets_a_new_notice(
    control_plane, compute_settings, run_jobs, db
):
    api, browser, org_id = await signed_in(
        control_plane, "notices@example.com", compute_settings, run_jobs
    )
    user_id = (await browser.get("/v1/auth/me")).json()["id"]
    try:
        async with reading(browser, "/v1/notifications/stream") as notices:
            async with db.transaction() as s:
                s.add(
                    Notification(
                        user_id=user_id,
                        org_id=org_id,
                        category="security",
                        kind="security.new_device",
                        title="New sign-in",
                        body="from new-laptop/1.0",
                        data={},
                        event_id="evt_test",
                    )
                )
            got = await notices.next()
            assert got.event == "notification"
            notice = json.loads(got.data)
            assert notice["kind"] == "security.new_device" and got.id == notice["id"]
    finally:
        await api.aclose()
        await browser.aclose()
