"""Uid ranges made ready ahead of boots (isolation.RangePool, ADR 0010 "Boot cost"): a ready
range is claimed like any other, handed to exactly one instance, given back at close and after
a crash, and leaves no helper process behind."""

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from forkyard.node import isolation

pytestmark = pytest.mark.sandbox


def _claims() -> dict[int, str]:
    """slot -> owner, of every claim on the host."""
    out = {}
    for name in os.listdir(isolation.CLAIMS_DIR):
        if name.isdigit():
            try:
                out[int(name)] = (isolation.CLAIMS_DIR / name).read_text().split("\n")[0]
            except FileNotFoundError:  # released by another run meanwhile
                pass
    return out


def _pool_slots(driver) -> set[int]:
    prefix = f"{driver.data_dir}:pool:"
    return {slot for slot, owner in _claims().items() if owner.startswith(prefix)}


async def _filled(driver) -> None:
    for _ in range(500):
        if driver.ranges.ready() == driver.ranges.size:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pool was not refilled")


async def _host_uid_of(driver, instance_id: str) -> int:
    r = await driver.exec(instance_id, "cat /proc/self/uid_map")
    inside, host, count = r.stdout.split()
    assert (inside, count) == (b"0", b"65536")
    return int(host)


async def test_boots_take_ready_ranges_and_never_share_one(driver, make_spec):
    first = make_spec()
    await driver.start(first)  # a boot tops the pool up once it is done
    specs = [make_spec() for _ in range(4)]
    try:
        await _filled(driver)
        ready = _pool_slots(driver)
        assert len(ready) == driver.ranges.size
        # Back to back, then several at once (more than are ready: the rest make their own).
        await driver.start(specs[0])
        await asyncio.gather(*(driver.start(s) for s in specs[1:]))
        ids = [first.instance_id, *(s.instance_id for s in specs)]
        slots = [int((driver.instance_dir(i) / "uid-range").read_text()) for i in ids]
        assert len(set(slots)) == len(ids)
        assert ready & set(slots)  # the ready ones were used
        claims = _claims()
        for iid, slot in zip(ids, slots, strict=True):
            assert claims[slot] == f"{driver.data_dir}:{iid}"  # now the instance's own claim
            assert await _host_uid_of(driver, iid) == isolation.UidRange(slot).first
        await _filled(driver)
        assert not _pool_slots(driver) & set(slots)  # what is ready belongs to no instance
    finally:
        for iid in [first.instance_id, *(s.instance_id for s in specs)]:
            await driver.destroy(iid)


async def test_a_ready_range_outlives_the_grace_period_while_its_node_runs(driver, make_spec):
    """A ready range has no cgroup yet: its claim is kept by the node's own process. Aged past
    the grace period, another installation's claim must still not get it."""
    spec = make_spec()
    await driver.start(spec)
    try:
        await _filled(driver)
        ready = _pool_slots(driver)
        old = time.time() - 10 * isolation.CLAIM_GRACE_S
        for slot in ready:
            os.utime(isolation.CLAIMS_DIR / str(slot), (old, old))
        other = isolation.claim_range("another-installation:x", Path("/nonexistent"))
        try:
            assert other.slot not in ready
        finally:
            isolation.release_range(other, "another-installation:x")
        assert _pool_slots(driver) == ready
    finally:
        await driver.destroy(spec.instance_id)


async def test_close_gives_ready_ranges_back_and_leaves_no_process(make_spec, tmp_path):
    from forkyard.node.drivers.sandbox import SandboxDriver

    d = SandboxDriver(tmp_path / "node", cgroup_parent=f"forkyard-test-ready-{os.getpid()}")
    spec = make_spec()
    try:
        await d.start(spec)
        await _filled(d)
        assert len(_pool_slots(d)) == d.ranges.size
        await d.destroy(spec.instance_id)
    finally:
        await d.close()
        d.release_store()
        for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
            p = Path("/sys/fs/cgroup") / c / d.cgroup_parent
            if p.is_dir():
                p.rmdir()
    assert _pool_slots(d) == set()
    # The children that made the namespaces are gone (killed and reaped, not zombies).
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    for pid in children:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert not f.read().startswith(b"unshare\0")


def test_a_crashed_node_s_ready_ranges_are_taken_back_at_its_next_start(tmp_path):
    """A node killed outright cannot give its ranges back: the next start of the same node
    does, at once; another node's ready ranges are left alone."""
    node = str(tmp_path / "node")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    gone = isolation.claim_range(f"{node}:pool:{dead.pid}", Path(f"/proc/{dead.pid}/cmdline"))
    live_owner = f"{tmp_path / 'other'}:pool:{os.getpid()}"
    live = isolation.claim_range(live_owner, Path(f"/proc/{os.getpid()}/cmdline"))
    try:
        pool = isolation.RangePool(node)
        claims = _claims()
        assert gone.slot not in claims
        assert claims[live.slot] == live_owner
        pool.close()
    finally:
        isolation.release_range(gone, f"{node}:pool:{dead.pid}")
        isolation.release_range(live, live_owner)


def test_a_pool_dropped_without_close_gives_its_ranges_back(tmp_path):
    node = str(tmp_path / "node")
    pool = isolation.RangePool(node, size=1)
    pool.fill()
    owner = f"{node}:pool:{os.getpid()}"
    assert owner in _claims().values()
    del pool  # collected: the finalizer releases what was ready
    assert owner not in _claims().values()
