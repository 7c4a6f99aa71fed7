"""Compute servers: node registration over the internal endpoints, staff-only admin routes,
drain, status, metrics, storage, and a silent server marked unreachable and recovering."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from forkyard.identity.models import User
from forkyard.jobs.worker import Worker
from forkyard.kit.clock import clock
from tests.compute.conftest import NODE_TOKEN, Platform, create_running, wait_status
from tests.helpers import PASSWORD, error_code


async def make_staff(db: Any, email: str) -> None:
    async with db.transaction() as session:
        await session.execute(update(User).where(User.email == email).values(is_staff=True))


def capacity() -> dict[str, int]:
    return {
        "cpus": 2,
        "memory_mb": 1024,
        "disk_mb": 10000,
        "disk_free_mb": 5000,
        "slots": 10,
        "running_instances": 0,
    }


async def test_internal_endpoints_need_the_node_token(platform: Platform):
    url = platform.url
    body = {
        "name": "intruder",
        "url": "http://127.0.0.1:1",
        "secret": "s" * 32,
        "driver": "sandbox",
        "capacity": capacity(),
    }
    async with httpx.AsyncClient(base_url=url) as anon:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": NODE_TOKEN}):
            r = await anon.post("/v1/internal/servers/register", json=body, headers=headers)
            if (
                headers.get("Authorization") == NODE_TOKEN
            ):  # without "Bearer " it is still the token
                continue
            assert r.status_code == 401 and error_code(r) == "unauthenticated", headers
        server_id = platform.node.server_id
        r = await anon.post(
            f"/v1/internal/servers/{server_id}/heartbeat",
            json={"capacity": capacity()},
            headers={"Authorization": "Bearer wrong-token"},
        )
        assert r.status_code == 401
        # a user's API key is not a node token either
        r = await anon.post(
            "/v1/internal/servers/register",
            json=body,
            headers={"Authorization": platform.api.headers["Authorization"]},
        )
        assert r.status_code == 401
        good = {"Authorization": f"Bearer {NODE_TOKEN}"}
        r = await anon.post(
            "/v1/internal/servers/srv_01jabcdefghjkmnpqrstvwxyz0/heartbeat",
            json={"capacity": capacity()},
            headers=good,
        )
        assert r.status_code == 404 and error_code(r) == "not_found"
        r = await anon.post("/v1/internal/servers/register", json={"name": "x"}, headers=good)
        assert r.status_code == 422


async def test_admin_routes_are_staff_only(platform: Platform, db):
    server_id = platform.node.server_id
    paths = [
        ("GET", "/v1/admin/servers"),
        ("GET", f"/v1/admin/servers/{server_id}"),
        ("POST", f"/v1/admin/servers/{server_id}/drain"),
        ("GET", f"/v1/admin/servers/{server_id}/metrics"),
        ("PATCH", f"/v1/admin/servers/{server_id}/status"),
        ("GET", f"/v1/admin/servers/{server_id}/vm-storage"),
    ]
    for method, path in paths:
        r = await platform.browser.request(
            method, path, json={"status": "disabled"} if method == "PATCH" else None
        )
        assert r.status_code == 404 and error_code(r) == "not_found", (method, path)
        r = await platform.api.request(
            method, path, json={"status": "disabled"} if method == "PATCH" else None
        )
        assert r.status_code == 404, (method, path)
    await make_staff(db, "owner@example.com")
    r = await platform.browser.get("/v1/admin/servers")
    assert r.status_code == 200
    (server,) = r.json()["data"]
    assert server["id"] == server_id and server["status"] == "active" and not server["stale"]
    assert server["driver"] == "sandbox" and server["cpus"] >= 1 and server["slots"] > 0
    assert server["url"].startswith("http://127.0.0.1:")
    assert (await platform.browser.get("/v1/admin/servers/srv_nope")).status_code == 404
    assert (await platform.browser.get("/v1/admin/servers/inst_nope")).status_code == 404


async def test_drain_status_metrics_and_storage(platform: Platform, db):
    api, staff = platform.api, platform.browser
    await make_staff(db, "owner@example.com")
    server_id = platform.node.server_id
    inst = await create_running(api)
    iid = inst["id"]

    r = await staff.post(f"/v1/admin/servers/{server_id}/drain")
    assert r.status_code == 200 and r.json()["status"] == "draining"
    r = await api.post("/v1/instances", json={"memory_mb": 256})
    assert r.status_code == 503 and error_code(r) == "no_capacity"
    # what runs there keeps running, and can stop and start again in place
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "echo still"})
    assert r.json()["stdout"] == "still\n"
    # a heartbeat does not undo a drain
    async with httpx.AsyncClient(timeout=30) as c:
        await platform.node.heartbeat(c)
    assert (await staff.get(f"/v1/admin/servers/{server_id}")).json()["status"] == "draining"

    r = await staff.patch(f"/v1/admin/servers/{server_id}/status", json={"status": "bogus"})
    assert r.status_code == 422
    r = await staff.patch(f"/v1/admin/servers/{server_id}/status", json={"status": "disabled"})
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert (await api.post("/v1/instances", json={"memory_mb": 256})).status_code == 503
    r = await staff.patch(f"/v1/admin/servers/{server_id}/status", json={"status": "active"})
    assert r.json()["status"] == "active"
    second = await create_running(api)

    # metrics: the node's last report and instances by status
    await api.delete(f"/v1/instances/{second['id']}/vm")
    await wait_status(api, second["id"], "stopped")
    r = await staff.get(f"/v1/admin/servers/{server_id}/metrics")
    assert r.status_code == 200
    m = r.json()
    assert m["server_id"] == server_id and m["instances"] == {"running": 1, "stopped": 1}
    assert m["metrics"]["cpus"] >= 1 and m["metrics"]["memory_mb"] > 0

    # vm-storage: disk use per instance and the free space
    r = await api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "head -c 8000000 /dev/urandom > /root/blob && sync"},
    )
    assert r.json()["exit_code"] == 0
    r = await staff.get(f"/v1/admin/servers/{server_id}/vm-storage")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["server_id"] == server_id and report["free_bytes"] > 0
    per = {i["instance_id"]: i["used_bytes"] for i in report["instances"]}
    assert set(per) == {iid, second["id"]}
    assert per[iid] >= 8_000_000 > per[second["id"]], per
    assert report["used_bytes"] >= per[iid]
    assert report["storage_mode"] in ("reflink", "copy") and report["store"]["free_bytes"] > 0
    ckpt = await api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "c1"})
    assert ckpt.status_code == 201, ckpt.text
    report = (await staff.get(f"/v1/admin/servers/{server_id}/vm-storage")).json()
    assert len(report["layers"]) == 1

    # audited
    from sqlalchemy import select

    from forkyard.audit.models import AuditEvent

    async with db.sessions() as session:
        actions = set(
            (
                await session.execute(
                    select(AuditEvent.action).where(AuditEvent.target_id == server_id)
                )
            ).scalars()
        )
    assert {"server.drained", "server.status_changed"} <= actions


async def sweep(db: Any, settings: Any) -> None:
    await Worker(db, settings).run_periodic_now()


async def test_silent_server_is_unreachable_then_recovers(platform: Platform, db, compute_settings):
    api, staff = platform.api, platform.browser
    await make_staff(db, "owner@example.com")
    server_id = platform.node.server_id
    iid = (await create_running(api))["id"]
    stopped = (await create_running(api))["id"]
    await api.delete(f"/v1/instances/{stopped}/vm")
    await wait_status(api, stopped, "stopped")

    for _ in range(3):  # the node's own heartbeat may land between the jump and the sweep
        clock.advance(timedelta(seconds=compute_settings.server_stale_after_s + 1))
        await sweep(db, compute_settings)
        server = (await staff.get(f"/v1/admin/servers/{server_id}")).json()
        if server["status"] == "unreachable":
            break
    assert server["status"] == "unreachable" and server["stale"] is True
    inst = (await api.get(f"/v1/instances/{iid}")).json()
    assert (inst["status"], inst["status_reason"]) == ("error", "server_unreachable")
    assert (await api.get(f"/v1/instances/{iid}/vm")).json()["state"] == "unreachable"
    assert (await api.get(f"/v1/instances/{stopped}")).json()["status"] == "stopped"
    r = await api.post("/v1/instances", json={"memory_mb": 256})
    assert r.status_code == 503 and error_code(r) == "no_capacity"
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "true"})
    assert r.status_code == 409 and error_code(r) == "instance_not_running"

    # the node speaks again: the server is active, the instance (still up there) is running
    async with httpx.AsyncClient(timeout=30) as c:
        await platform.node.heartbeat(c)
    server = (await staff.get(f"/v1/admin/servers/{server_id}")).json()
    assert server["status"] == "active" and server["stale"] is False
    inst = (await api.get(f"/v1/instances/{iid}")).json()
    assert (inst["status"], inst["status_reason"]) == ("running", None)
    assert (await api.get(f"/v1/instances/{iid}/vm")).json()["state"] == "running"
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "echo back"})
    assert r.json()["stdout"] == "back\n"
    await create_running(api)


async def test_account_deletion_deletes_personal_instances(platform: Platform):
    api, browser = platform.api, platform.browser
    a = (await create_running(api))["id"]
    b = (await create_running(api))["id"]
    await api.delete(f"/v1/instances/{b}/vm")
    await wait_status(api, b, "stopped")
    assert (await browser.post("/v1/auth/sudo", json={"password": PASSWORD})).status_code == 200
    assert (await browser.delete("/v1/auth/me")).status_code == 204
    driver = platform.node.driver
    assert driver is not None
    import asyncio

    for _ in range(300):
        if not driver.list_owned():
            break
        await asyncio.sleep(0.05)
    assert driver.list_owned() == set(), (a, b)
