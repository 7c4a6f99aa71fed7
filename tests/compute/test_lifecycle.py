"""Instance lifecycle through the API: statuses, stop/start/restart/flush, bad transitions,
delete leaving nothing on the node, PATCH, list filters and pages, quotas, verification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from forkyard.compute.models import ExecRecord, Instance, Vm
from forkyard.config import Settings
from forkyard.jobs.models import Job
from tests.compute.conftest import Platform, create_running, wait_status
from tests.helpers import error_code

CGROUP_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


@pytest.fixture
def compute_limits() -> dict[str, Any]:
    """Settings overrides; a test parametrizes this to set quotas."""
    return {}


@pytest.fixture
def compute_settings(settings: Settings, compute_limits: dict[str, Any]) -> Settings:
    from tests.compute.conftest import NODE_TOKEN

    return settings.model_copy(
        update={"run_worker_in_api": True, "node_token": NODE_TOKEN, **compute_limits}
    )


def leftovers(platform: Platform, instance_id: str) -> list[str]:
    """Everything of the instance still on the node: processes' cgroups, mounts, files."""
    driver = platform.node.driver
    assert driver is not None
    found = []
    if instance_id in driver.list_owned():
        found.append("owned")
    for c in CGROUP_CONTROLLERS:
        if (Path("/sys/fs/cgroup") / c / platform.node.config.cgroup_parent / instance_id).exists():
            found.append(f"cgroup {c}")
    data_dir = str(platform.node.config.data_dir.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            mp = line.split()[1]
            if mp.startswith(data_dir) and (instance_id in mp or "/instances/" in mp):
                found.append(f"mount {mp}")
    root = str(driver.root_dir(instance_id))
    with open("/proc/mounts") as f:
        if any(line.split()[1] == root for line in f):
            found.append("root mount")
    if Path(root).exists():
        found.append("root dir")
    claims = Path("/run/forkyard/uid-ranges")
    if any(f":{instance_id}\n" in c.read_text() for c in claims.glob("[0-9]*")):
        found.append("uid range claim")
    if (driver.instances_dir / instance_id).exists():
        found.append("instance dir")
    if list(driver.layers.disks_dir.glob(f"{instance_id}*")):
        found.append("disk image")
    return found


async def vm_pid_alive(platform: Platform, instance_id: str) -> bool:
    driver = platform.node.driver
    assert driver is not None
    return driver.state(instance_id) == "running"


async def test_statuses_stop_start_restart_flush(platform):
    api = platform.api
    r = await api.post("/v1/instances", json={"name": "life", "memory_mb": 256, "disk_mb": 256})
    assert r.status_code == 202 and r.json()["status"] == "provisioning"
    iid = r.json()["id"]
    assert r.json()["name"] == "life" and r.json()["server_id"].startswith("srv_")
    inst = await wait_status(api, iid, "running")
    assert inst["status_reason"] is None

    vm = (await api.get(f"/v1/instances/{iid}/vm")).json()
    assert vm["id"].startswith("vm_") and vm["instance_id"] == iid and vm["boots"] == 1
    assert vm["state"] == "running" and vm["pid"] > 0 and vm["uptime_s"] >= 0
    assert vm["memory_limit_bytes"] == 256 * 2**20 and vm["disk_total_bytes"] > 0
    assert vm["server_id"] == inst["server_id"]

    files = f"/v1/instances/{iid}/files"
    await api.post(files, json={"path": "/root/keep.txt", "content": "kept"})
    r = await api.post(f"/v1/instances/{iid}/vm/flush")
    assert r.status_code == 200 and r.json()["state"] == "running"

    # restart: new processes (a background one is gone), same files, boots counted
    await api.post(
        f"/v1/instances/{iid}/exec", json={"command": "nohup sleep 300 >/dev/null 2>&1 &"}
    )
    r = await api.post(f"/v1/instances/{iid}/vm/restart")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    after = (await api.get(f"/v1/instances/{iid}/vm")).json()
    assert after["boots"] == 2 and after["state"] == "running"
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": "pgrep -x sleep || echo none"})
    assert r.json()["stdout"].strip() == "none"
    assert (await api.get(files, params={"path": "/root/keep.txt"})).content == b"kept"

    # stop: the disk stays; everything that needs a running VM says so
    r = await api.delete(f"/v1/instances/{iid}/vm")
    assert r.status_code == 202 and r.json()["status"] == "stopping"
    stopped = await wait_status(api, iid, "stopped")
    assert stopped["status_reason"] == "stopped_by_user"
    assert not await vm_pid_alive(platform, iid)
    vm = (await api.get(f"/v1/instances/{iid}/vm")).json()
    assert vm["state"] == "stopped" and vm["pid"] is None and vm["uptime_s"] is None
    assert vm["stopped_at"] is not None and vm["memory_bytes"] is None
    for method, path in (
        ("POST", f"/v1/instances/{iid}/vm/restart"),
        ("POST", f"/v1/instances/{iid}/vm/flush"),
        ("POST", f"/v1/instances/{iid}/exec"),
        ("GET", f"{files}?path=/root/keep.txt"),
        ("POST", f"{files}/edit"),
        ("GET", f"{files}/list"),
    ):
        body: Any = {"command": "true"} if path.endswith("exec") else None
        if path.endswith("edit"):
            body = {"path": "/root/keep.txt", "old_str": "k", "new_str": "K"}
        r = await api.request(method, path, json=body)
        assert r.status_code == 409 and error_code(r) == "instance_not_running", (path, r.text)
        assert r.json()["error"]["details"]["status"] == "stopped"
    r = await api.delete(f"/v1/instances/{iid}/vm")
    assert r.status_code == 409 and error_code(r) == "invalid_transition"
    assert r.json()["error"]["details"] == {"status": "stopped", "action": "stop"}

    r = await api.post(f"/v1/instances/{iid}/vm")
    assert r.status_code == 202 and r.json()["status"] == "provisioning"
    await wait_status(api, iid, "running")
    assert (await api.get(files, params={"path": "/root/keep.txt"})).content == b"kept"
    vm = (await api.get(f"/v1/instances/{iid}/vm")).json()
    assert vm["boots"] == 3
    r = await api.post(f"/v1/instances/{iid}/vm")
    assert r.status_code == 409 and error_code(r) == "invalid_transition"

    # delete: a second delete conflicts while the first runs, then it is gone
    r = await api.delete(f"/v1/instances/{iid}")
    assert r.status_code == 202 and r.json()["status"] == "deleting"
    r2 = await api.delete(f"/v1/instances/{iid}")
    assert r2.status_code in (404, 409)
    await wait_status(api, iid, "gone")
    assert leftovers(platform, iid) == []
    assert (await api.get(f"/v1/instances/{iid}/vm")).status_code == 404


async def test_delete_removes_everything(platform, db):
    api = platform.api
    running = (await create_running(api))["id"]
    stopped = (await create_running(api))["id"]
    for iid in (running, stopped):
        await api.post(
            f"/v1/instances/{iid}/exec",
            json={"command": "head -c 5000000 /dev/urandom > /root/big; sleep 300 &"},
        )
    driver = platform.node.driver
    assert driver is not None
    assert leftovers(platform, running) != []  # the check sees a live instance
    await api.delete(f"/v1/instances/{stopped}/vm")
    await wait_status(api, stopped, "stopped")

    for iid in (running, stopped):
        assert (await api.delete(f"/v1/instances/{iid}")).status_code == 202
    for iid in (running, stopped):
        await wait_status(api, iid, "gone")
        assert leftovers(platform, iid) == [], iid
    assert driver.list_owned() == set()
    cg_parent = platform.node.config.cgroup_parent
    for c in CGROUP_CONTROLLERS:
        parent = Path("/sys/fs/cgroup") / c / cg_parent
        if parent.is_dir():
            assert [p.name for p in parent.iterdir() if p.is_dir()] == []
    async with db.sessions() as session:
        for model in (Instance, Vm, ExecRecord):
            assert (await session.execute(select(func.count()).select_from(model))).scalar() == 0


async def test_patch_list_filters_and_pages(platform):
    api = platform.api
    ids = []
    for i in range(3):
        r = await api.post(
            "/v1/instances",
            json={
                "name": f"n{i}",
                "memory_mb": 256,
                "disk_mb": 256,
                "labels": {"env": "prod" if i < 2 else "dev", "n": str(i)},
            },
        )
        assert r.status_code == 202
        ids.append(r.json()["id"])
    for iid in ids:
        await wait_status(api, iid, "running")

    r = await api.patch(
        f"/v1/instances/{ids[0]}",
        json={"name": "renamed", "labels": {"env": "prod", "tier": "web"}, "idle_timeout_s": 600},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["labels"], body["idle_timeout_s"]) == (
        "renamed",
        {"env": "prod", "tier": "web"},
        600,
    )
    assert body["updated_at"] is not None
    # a field left out is unchanged; null clears the idle timeout
    r = await api.patch(f"/v1/instances/{ids[0]}", json={"idle_timeout_s": None})
    assert r.json()["idle_timeout_s"] is None and r.json()["name"] == "renamed"
    for bad in ({"name": ""}, {"idle_timeout_s": 1}, {"labels": "x"}):
        r = await api.patch(f"/v1/instances/{ids[0]}", json=bad)
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
    assert (await api.patch("/v1/instances/inst_nope", json={"name": "x"})).status_code == 404

    # newest first, paged
    first = (await api.get("/v1/instances", params={"limit": 2})).json()
    assert [i["id"] for i in first["data"]] == [ids[2], ids[1]] and first["next_cursor"]
    rest = (
        await api.get("/v1/instances", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [i["id"] for i in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    r = await api.get("/v1/instances", params={"limit": 201})
    assert r.status_code == 422

    # labels: every given pair must match
    prod = (await api.get("/v1/instances", params={"label": "env=prod"})).json()["data"]
    assert {i["id"] for i in prod} == {ids[0], ids[1]}
    web = await api.get("/v1/instances", params=[("label", "env=prod"), ("label", "tier=web")])
    assert [i["id"] for i in web.json()["data"]] == [ids[0]]

    # status
    await api.delete(f"/v1/instances/{ids[1]}/vm")
    await wait_status(api, ids[1], "stopped")
    stopped = (await api.get("/v1/instances", params={"status": "stopped"})).json()["data"]
    assert [i["id"] for i in stopped] == [ids[1]]
    running = (await api.get("/v1/instances", params={"status": "running"})).json()["data"]
    assert {i["id"] for i in running} == {ids[0], ids[2]}
    both = await api.get("/v1/instances", params={"status": "running", "label": "env=prod"})
    assert [i["id"] for i in both.json()["data"]] == [ids[0]]


async def _rows(db: Any) -> tuple[int, int, int]:
    async with db.sessions() as session:
        return (
            (await session.execute(select(func.count()).select_from(Instance))).scalar_one(),
            (await session.execute(select(func.count()).select_from(Vm))).scalar_one(),
            (
                await session.execute(
                    select(func.count()).select_from(Job).where(Job.name == "instance.boot")
                )
            ).scalar_one(),
        )


@pytest.mark.parametrize(
    "compute_limits",
    [{"max_instances_per_org": 2, "max_vcpus_per_org": 4, "max_memory_mb_per_org": 1024}],
)
async def test_quotas_name_the_limit_and_leave_nothing(platform, db):
    api = platform.api
    r = await api.post("/v1/instances", json={"vcpus": 5, "memory_mb": 256})
    assert r.status_code == 403 and error_code(r) == "quota_exceeded"
    details = r.json()["error"]["details"]
    assert details == {"limit": "max_vcpus", "max": 4, "in_use": 0, "requested": 5}
    r = await api.post("/v1/instances", json={"memory_mb": 2048})
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_memory_mb"
    assert "max_memory_mb" in r.json()["error"]["message"]
    assert await _rows(db) == (0, 0, 0)

    a = await create_running(api, vcpus=2, memory_mb=512)
    await create_running(api, vcpus=1, memory_mb=256)
    r = await api.post("/v1/instances", json={"vcpus": 0.5, "memory_mb": 128})
    assert r.status_code == 403 and r.json()["error"]["details"]["limit"] == "max_instances"
    assert await _rows(db) == (2, 2, 2)
    # a stopped instance still holds its quota; a deleted one frees it
    await api.delete(f"/v1/instances/{a['id']}/vm")
    await wait_status(api, a["id"], "stopped")
    r = await api.post("/v1/instances", json={"memory_mb": 128})
    assert r.status_code == 403
    await api.delete(f"/v1/instances/{a['id']}")
    await wait_status(api, a["id"], "gone")
    r = await api.post("/v1/instances", json={"vcpus": 3, "memory_mb": 128})
    assert r.status_code == 202, r.text


async def test_unverified_email_and_bad_input_leave_nothing(platform, db):
    from tests.helpers import login, signup

    unverified = platform.browser.__class__(base_url=platform.url, headers={"Origin": platform.url})
    await signup(unverified, "later@example.com")
    await login(unverified, "later@example.com")
    r = await unverified.post("/v1/instances", json={"memory_mb": 256})
    assert r.status_code == 403 and error_code(r) == "email_not_verified"
    await unverified.aclose()

    api = platform.api
    for bad in (
        {"memory_mb": 1},
        {"vcpus": 0},
        {"disk_mb": 10},
        {"env": {"A=B": "x"}},
        {"idle_timeout_s": 0},
        {"name": "x" * 201},
    ):
        r = await api.post("/v1/instances", json=bad)
        assert r.status_code == 422 and error_code(r) == "validation_failed", bad
    r = await api.post("/v1/instances", json={"profile_id": "prof_01jabcdefghjkmnpqrstvwxyz0"})
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = await api.post(
        "/v1/instances", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    # a read-only key cannot create
    from tests.helpers import make_api_key

    ro = await make_api_key(platform.browser, scopes=["read"])
    r = await api.post(
        "/v1/instances", json={"memory_mb": 256}, headers={"Authorization": f"Bearer {ro}"}
    )
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert await _rows(db) == (0, 0, 0)


async def test_unknown_images_are_refused_before_anything_is_made(platform, db):
    api = platform.api
    # an image is a name: a host path is refused before anything is made, and so is a name
    # that is no image (it would only fail at boot)
    for name in ("/", "/etc", "../x", "a/b", "no-such-image"):
        r = await api.post("/v1/instances", json={"image": name, "memory_mb": 256})
        assert r.status_code == 422 and error_code(r) == "validation_failed", name
    assert await _rows(db) == (0, 0, 0)
