"""Instances on this node: boot, stop, destroy, flush, stats, ping, and the storage report."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from fastapi import APIRouter

from forkyard.node import contract as c
from forkyard.node import images as node_images
from forkyard.node.api.deps import Node, network_policy
from forkyard.node.drivers.base import Driver

router = APIRouter(prefix="/node")


@router.get("/instances")
async def list_instances(node: Node) -> c.InstancesOut:
    """Every instance this node holds, with its state."""
    driver = node.driver
    return c.InstancesOut(instances={i: driver.state(i) for i in sorted(driver.list_owned())})


@router.get("/storage")
async def storage_report(node: Node) -> c.StorageOut:
    """Disk used per instance and the space left."""
    return await asyncio.to_thread(_storage_report, node.driver)


@router.put("/instances/{instance_id}")
async def boot(instance_id: str, spec: c.SandboxSpecIn, node: Node) -> c.BootOut:
    """Boot the instance (creating its disk, or cloning it from `from_layer`, on first boot)."""
    driver = node.driver
    sandbox_spec = node.resolve_spec(instance_id, spec)
    # Only the first boot of a restored or forked instance clones its disk from the layer.
    from_layer = spec.from_layer if driver.state(instance_id) == "absent" else None
    info = await driver.start(sandbox_spec, from_layer=from_layer)
    return c.BootOut(pid=info.pid, boot_ms=info.boot_ms, created_disk=info.created_disk)


@router.put("/instances/{instance_id}/network")
async def set_network(instance_id: str, network: c.NetworkIn, node: Node) -> c.NetworkOut:
    """Change the instance's egress policy; a running instance's changes at once."""
    await node.driver.set_network(instance_id, network_policy(network))
    return c.NetworkOut(state=node.driver.state(instance_id), egress=network.egress)


@router.post("/instances/{instance_id}/stop")
async def stop(instance_id: str, node: Node) -> c.StateOut:
    """Stop every process; the disk stays."""
    await node.driver.stop(instance_id)
    return c.StateOut(state=node.driver.state(instance_id))


@router.delete("/instances/{instance_id}")
async def destroy(instance_id: str, node: Node) -> c.StateOut:
    """Remove every byte, mount and cgroup of the instance."""
    await node_images.cancel_step(node.driver, instance_id)  # a build step still running
    await node.driver.destroy(instance_id)
    return c.StateOut(state="absent")


@router.post("/instances/{instance_id}/flush")
async def flush(instance_id: str, node: Node) -> c.FlushOut:
    """Write the instance's filesystem to stable storage."""
    await node.driver.flush(instance_id)
    return c.FlushOut(flushed=True)


@router.get("/instances/{instance_id}/stats")
async def stats(instance_id: str, node: Node) -> c.StatsOut:
    """Live cpu, memory, disk and pids of a running instance."""
    s = await node.driver.stats(instance_id)
    return c.StatsOut(state=node.driver.state(instance_id), **s.__dict__)


@router.post("/instances/{instance_id}/ping")
async def ping(instance_id: str, node: Node) -> c.PingOut:
    """A round trip to the instance's agent."""
    return c.PingOut.model_validate(await node.driver.ping(instance_id))


def _allocated_bytes(root: Path) -> int:
    """Bytes actually allocated under `root` on its own filesystem (mounts are not descended:
    a sparse disk image counts what it holds, not its size)."""
    total = 0
    try:
        root_dev = root.stat().st_dev
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == root_dev]
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _instance_bytes(driver: Driver, instance_id: str) -> int:
    """The instance's directory plus its disk image, which may live in the layer store."""
    used = _allocated_bytes(driver.instances_dir / instance_id)
    image = driver.disk_image(instance_id)
    if not image.is_relative_to(driver.instances_dir / instance_id):
        with contextlib.suppress(OSError):
            used += image.stat().st_blocks * 512
    return used


def _storage_report(driver: Driver) -> c.StorageOut:
    # Instance disks live in the layer store: its free space is what counts.
    st = os.statvfs(driver.store_dir)
    per_instance = {i: _instance_bytes(driver, i) for i in sorted(driver.list_owned())}
    return c.StorageOut(
        driver=driver.name,
        free_bytes=st.f_bavail * st.f_frsize,
        total_bytes=st.f_blocks * st.f_frsize,
        instances=[
            c.InstanceUsageOut(instance_id=i, used_bytes=b) for i, b in per_instance.items()
        ],
        used_bytes=sum(per_instance.values()),
    )
