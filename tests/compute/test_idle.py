"""The idle timeout: an instance with no exec or file activity for idle_timeout_s is stopped by
the worker's sweep; activity (and a long-running exec) keeps it up. Time moves on the clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from forkyard.config import Settings
from forkyard.jobs.worker import Worker
from forkyard.kit.clock import clock
from tests.compute.conftest import NODE_TOKEN, create_running, wait_status


@pytest.fixture
def compute_settings(settings: Settings) -> Settings:
    # The clock jumps further than a node's heartbeat interval: staleness is not under test.
    return settings.model_copy(
        update={"run_worker_in_api": True, "node_token": NODE_TOKEN, "server_stale_after_s": 10**7}
    )


async def sweep(db: Any, settings: Any) -> None:
    await Worker(db, settings).run_periodic_now()


async def status(api: Any, iid: str) -> str:
    return str((await api.get(f"/v1/instances/{iid}")).json()["status"])


async def test_idle_instance_stops_and_activity_resets(platform, db, compute_settings):
    api = platform.api
    idle = (await create_running(api, idle_timeout_s=60))["id"]
    busy = (await create_running(api, idle_timeout_s=60))["id"]
    forever = (await create_running(api))["id"]  # no idle timeout

    clock.advance(timedelta(seconds=40))
    r = await api.post(f"/v1/instances/{busy}/exec", json={"command": "true"})
    assert r.status_code == 200
    await sweep(db, compute_settings)
    assert [await status(api, i) for i in (idle, busy)] == ["running", "running"]

    clock.advance(timedelta(seconds=25))  # idle: 65 s; busy: 25 s since its exec
    r = await api.get(f"/v1/instances/{busy}/files/list", params={"path": "/"})
    assert r.status_code == 200
    await sweep(db, compute_settings)
    await wait_status(api, idle, "stopped")
    assert (await api.get(f"/v1/instances/{idle}")).json()["status_reason"] == "idle_timeout"
    assert platform.node.driver.state(idle) == "stopped"
    assert await status(api, busy) == "running"

    clock.advance(timedelta(seconds=50))  # busy: 50 s since its file listing
    await sweep(db, compute_settings)
    assert await status(api, busy) == "running"
    await api.post(f"/v1/instances/{busy}/files", json={"path": "/root/x", "content": "activity"})
    clock.advance(timedelta(seconds=59))
    await sweep(db, compute_settings)
    assert await status(api, busy) == "running"
    clock.advance(timedelta(seconds=2))
    await sweep(db, compute_settings)
    await wait_status(api, busy, "stopped")

    clock.advance(timedelta(days=3))
    await sweep(db, compute_settings)
    assert await status(api, forever) == "running"

    # a stopped instance starts again with its disk; the timeout still applies
    assert (await api.post(f"/v1/instances/{busy}/vm")).status_code == 202
    await wait_status(api, busy, "running")
    r = await api.get(f"/v1/instances/{busy}/files", params={"path": "/root/x"})
    assert r.content == b"activity"


async def test_a_running_exec_is_activity(platform, db, compute_settings):
    api = platform.api
    iid = (await create_running(api, idle_timeout_s=30))["id"]
    long_exec = asyncio.create_task(
        api.post(f"/v1/instances/{iid}/exec", json={"command": "sleep 3; echo done"})
    )
    await asyncio.sleep(1)
    clock.advance(timedelta(seconds=120))
    await sweep(db, compute_settings)
    assert await status(api, iid) == "running"
    r = await long_exec
    assert r.json()["stdout"] == "done\n"
    # the exec's end counts as activity too
    clock.advance(timedelta(seconds=20))
    await sweep(db, compute_settings)
    assert await status(api, iid) == "running"
    clock.advance(timedelta(seconds=15))
    await sweep(db, compute_settings)
    await wait_status(api, iid, "stopped")


async def test_the_worker_loop_stops_idle_instances(platform, db):
    """No manual sweep: the API's own worker runs it on its timer."""
    api = platform.api
    iid = (await create_running(api, idle_timeout_s=10))["id"]
    clock.advance(timedelta(seconds=11))
    await wait_status(api, iid, "stopped", timeout=15)
