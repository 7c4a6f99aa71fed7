"""Load and leftovers: a fork of 50 brings every child up and keeps it up (past heartbeats), and
an exec record whose API process died is closed by the sweep instead of staying `running`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from forkyard.compute.models import ExecRecord
from forkyard.compute.service import EXEC_MAX_TIMEOUT_S
from forkyard.config import Settings
from forkyard.jobs.worker import Worker
from forkyard.kit.clock import utcnow
from forkyard.node.runner import HEARTBEAT_EVERY_S
from tests.compute.conftest import NODE_TOKEN, create_running


@pytest.fixture
def compute_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"run_worker_in_api": True, "node_token": NODE_TOKEN, "max_instances_per_org": 60}
    )


@pytest.mark.timeout(300)
async def test_fork_of_fifty_all_running(platform):
    api = platform.api
    parent = (await create_running(api, memory_mb=64, disk_mb=128))["id"]
    await api.post(f"/v1/instances/{parent}/files", json={"path": "/root/f", "content": "p"})
    r = await api.post(f"/v1/instances/{parent}/fork", json={"count": 50})
    assert r.status_code == 201, r.text
    children = r.json()["children"]
    errors = [c["error"] for c in children if c["error"]]
    assert errors == []
    kids = [c["instance"]["id"] for c in children]
    await asyncio.sleep(HEARTBEAT_EVERY_S + 1.5)  # a heartbeat reports what still runs
    statuses = [(await api.get(f"/v1/instances/{k}")).json() for k in kids]
    down = [
        (s["id"], s["status"], s["status_reason"]) for s in statuses if s["status"] != "running"
    ]
    assert down == []
    outs = await asyncio.gather(
        *(api.post(f"/v1/instances/{k}/exec", json={"command": "cat /root/f"}) for k in kids)
    )
    assert [(o.status_code, o.json().get("stdout")) for o in outs] == [(200, "p")] * 50
    for k in [*kids, parent]:
        assert (await api.delete(f"/v1/instances/{k}")).status_code == 202


async def test_exec_of_a_dead_api_process_is_closed(platform, db, compute_settings):
    iid = (await create_running(platform.api))["id"]
    now = utcnow()
    async with db.transaction() as session:
        for age in (EXEC_MAX_TIMEOUT_S + 120, 30):
            session.add(
                ExecRecord(
                    instance_id=iid,
                    org_id=platform.org_id,
                    command=f"sleep {age}",
                    status="running",
                    created_at=now - timedelta(seconds=age),
                )
            )
    await Worker(db, compute_settings).run_periodic_now()
    async with db.transaction() as session:
        rows: Any = (
            await session.execute(
                select(ExecRecord.command, ExecRecord.status, ExecRecord.finished_at)
                .where(ExecRecord.instance_id == iid)
                .order_by(ExecRecord.command)
            )
        ).all()
    # the one past the longest timeout is closed; a recent one may still be running somewhere
    assert [(c, s, f is not None) for c, s, f in rows] == [
        ("sleep 30", "running", False),
        (f"sleep {EXEC_MAX_TIMEOUT_S + 120}", "lost", True),
    ]
