"""A real `forkyard node` process killed with SIGKILL and started again with the same data dir
and name: what should run runs again with its files, orphans go, nothing leaks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from forkyard.config import Settings
from tests.compute.conftest import CONTROLLERS, NodeProcess, signed_in, wait_status


def cgroups(parent: str) -> set[str]:
    found = set()
    for c in CONTROLLERS:
        p = Path("/sys/fs/cgroup") / c / parent
        if p.is_dir():
            found |= {f"{c}/{d.name}" for d in p.iterdir() if d.is_dir()}
    return found


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix + "/")]


async def exec_out(api: httpx.AsyncClient, iid: str, command: str) -> dict[str, Any]:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def create_when_ready(api: httpx.AsyncClient, timeout: float = 300) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await api.post("/v1/instances", json={"memory_mb": 256, "disk_mb": 256})
        if r.status_code == 202:
            iid = str(r.json()["id"])
            await wait_status(api, iid, "running")
            return iid
        assert r.status_code == 503, r.text  # no_capacity until the node has registered
        assert asyncio.get_running_loop().time() < deadline, "the node never registered"
        await asyncio.sleep(0.2)


async def test_sigkilled_node_reconciles(
    node_process: NodeProcess, control_plane: str, compute_settings: Settings, run_jobs: Any
):
    api, browser, _ = await signed_in(control_plane, "rec@example.com", compute_settings, run_jobs)
    node_process.start()
    keep = await create_when_ready(api)
    idle = await create_when_ready(api)
    await api.post(f"/v1/instances/{keep}/files", json={"path": "/root/f.txt", "content": "kept"})
    await exec_out(api, keep, "nohup sleep 300 >/dev/null 2>&1 &")
    await api.delete(f"/v1/instances/{idle}/vm")
    await wait_status(api, idle, "stopped")
    await api.post(f"/v1/instances/{keep}/vm/flush")

    node_process.kill()
    data_dir = node_process.data_dir
    assert mounts_under(data_dir / "instances"), "a killed node leaves mounts behind"
    # an orphan: an instance directory, disk and cgroup no database row knows about
    orphan = "inst_01jorphanorphanorphanorph0"
    (data_dir / "instances" / orphan / "run").mkdir(parents=True)
    (data_dir / "instances" / orphan / "spec.json").write_text("{}")
    for c in ("memory", "pids"):
        (Path("/sys/fs/cgroup") / c / node_process.cgroup_parent / orphan).mkdir(parents=True)

    node_process.start()
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        r = await api.post(f"/v1/instances/{keep}/exec", json={"command": "cat /root/f.txt"})
        if r.status_code == 200 and r.json()["stdout"] == "kept":
            break
        assert asyncio.get_running_loop().time() < deadline, r.text
        await asyncio.sleep(0.2)
    # a fresh boot: the old processes are gone
    assert (await exec_out(api, keep, "pgrep -x sleep || echo none"))["stdout"].strip() == "none"
    inst = (await api.get(f"/v1/instances/{keep}")).json()
    assert (inst["status"], inst["status_reason"]) == ("running", None)
    assert (await api.get(f"/v1/instances/{idle}")).json()["status"] == "stopped"

    # the orphan is gone, and nothing is mounted or grouped beyond the one running instance
    assert not (data_dir / "instances" / orphan).exists()
    assert cgroups(node_process.cgroup_parent) == {f"{c}/{keep}" for c in CONTROLLERS}
    assert {
        m.split("/instances/")[1].split("/")[0] for m in mounts_under(data_dir / "instances")
    } == {keep}
    # the stopped one still starts with its disk, and heartbeats keep the running one running
    assert (await api.post(f"/v1/instances/{idle}/vm")).status_code == 202
    await wait_status(api, idle, "running")
    await asyncio.sleep(6)  # past a heartbeat
    assert (await api.get(f"/v1/instances/{keep}")).json()["status"] == "running"

    # a node killed while an instance is deleted: the deletion completes once it is back
    node_process.kill()
    r = await api.delete(f"/v1/instances/{idle}")
    assert r.status_code == 202
    node_process.start()
    await wait_status(api, idle, "gone", timeout=120)
    assert not (data_dir / "instances" / idle).exists()
    await api.aclose()
    await browser.aclose()
