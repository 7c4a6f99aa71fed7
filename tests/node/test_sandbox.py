import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from forkyard.node.errors import AgentUnavailable, InstanceNotRunning
from forkyard.node.reconcile import reconcile

pytestmark = pytest.mark.sandbox


async def test_boots_fast_and_sees_only_itself(driver, make_spec):
    spec = make_spec()
    info = await driver.start(spec)
    try:
        assert info.boot_ms < 1000  # the target is ~100 ms; the bench prints the real figure
        r = await driver.exec(spec.instance_id, "hostname; ps -e -o pid= | wc -l; ip -o link")
        host, nprocs, links = r.stdout.decode().split("\n", 2)
        assert host == spec.instance_id
        assert int(nprocs) <= 5  # bwrap init, agent, sh, ps, wc
        assert [line.split(":")[1].strip() for line in links.strip().splitlines()] == ["lo"]
        assert (await driver.ping(spec.instance_id))["uptime_s"] >= 0
    finally:
        await driver.destroy(spec.instance_id)


async def test_instances_cannot_see_each_other(driver, make_spec):
    a, b = make_spec(), make_spec()
    await asyncio.gather(driver.start(a), driver.start(b))
    try:
        await driver.write_file(a.instance_id, "/root/secret", b"only a")
        r = await driver.exec(b.instance_id, "cat /root/secret")
        assert b"only a" not in r.stdout and r.exit_code != 0
        r = await driver.exec(b.instance_id, ["ps", "-e", "-o", "comm="])
        assert r.stdout.split() == [b"bwrap", b"python3", b"ps"]
        assert (await driver.read_file(a.instance_id, "/root/secret")) == b"only a"
        # Nothing of the host's data dir is visible inside either.
        r = await driver.exec(a.instance_id, f"ls {driver.data_dir}")
        assert r.exit_code != 0
    finally:
        await asyncio.gather(driver.destroy(a.instance_id), driver.destroy(b.instance_id))


async def test_memory_limit_oom_kills(driver, instance):
    r = await driver.exec(
        instance,
        ["python3", "-c", "b = bytearray(700 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"],
    )
    assert r.exit_code == 137
    assert (await driver.exec(instance, "echo alive")).stdout == b"alive\n"


async def test_fork_bomb_hits_pids_max_and_instance_survives(driver, make_spec):
    spec = make_spec(pids_max=128)
    await driver.start(spec)
    try:
        r = await driver.exec(
            spec.instance_id, "bomb() { bomb | bomb & }; bomb; sleep 3", timeout=3
        )
        # The limit stopped the bomb: forks failed (whether or not the outer shell itself could
        # still fork `sleep` and so ran into the timeout).
        assert b"Cannot fork" in r.stderr, r
        stats = await driver.stats(spec.instance_id)
        assert stats.pids_max == 128 and stats.pids <= 128
        assert (await driver.exec(spec.instance_id, "echo alive", timeout=10)).stdout == b"alive\n"
    finally:
        await driver.destroy(spec.instance_id)


async def test_write_past_disk_limit_fails_enospc(driver, make_spec):
    spec = make_spec(disk_mb=64)
    await driver.start(spec)
    try:
        r = await driver.exec(spec.instance_id, "dd if=/dev/zero of=/big bs=1M count=200")
        assert r.exit_code != 0 and b"No space left on device" in r.stderr
        stats = await driver.stats(spec.instance_id)
        assert stats.disk_total_bytes <= 64 * 1024 * 1024
    finally:
        await driver.destroy(spec.instance_id)


async def test_paths_resolve_inside_the_instance(driver, instance):
    host_marker = Path("/tmp") / f"forkyard-escape-{os.getpid()}"
    await driver.write_file(instance, "../../../../etc/escape-test", b"dotdot")
    await driver.write_file(instance, str(host_marker), b"abs")
    await driver.exec(instance, "ln -s / /root/hostroot")
    await driver.write_file(instance, "/root/hostroot/etc/via-symlink", b"link")
    assert not Path("/etc/escape-test").exists()
    assert not Path("/etc/via-symlink").exists()
    assert not host_marker.exists()
    r = await driver.exec(instance, f"cat /etc/escape-test /etc/via-symlink {host_marker}")
    assert r.stdout == b"dotdotlinkabs"


async def test_stop_start_keeps_the_disk(driver, make_spec):
    spec = make_spec()
    await driver.start(spec)
    try:
        await driver.write_file(spec.instance_id, "/root/keep.txt", b"persisted")
        await driver.stop(spec.instance_id)
        assert driver.state(spec.instance_id) == "stopped"
        with pytest.raises(InstanceNotRunning):
            await driver.exec(spec.instance_id, "true")
        info = await driver.start(spec)
        assert not info.created_disk
        assert await driver.read_file(spec.instance_id, "/root/keep.txt") == b"persisted"
        await driver.flush(spec.instance_id)
    finally:
        await driver.destroy(spec.instance_id)


def _leftovers(driver, instance_id: str) -> list[str]:
    found = []
    d = driver.instance_dir(instance_id)
    if d.exists():
        found.append(str(d))
    with open("/proc/mounts") as f:
        found += [line for line in f if instance_id in line]
    for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
        p = Path("/sys/fs/cgroup") / c / driver.cgroup_parent / instance_id
        if p.exists():
            found.append(str(p))
    return found


async def test_destroy_leaves_nothing_behind(driver, make_spec):
    spec = make_spec()
    info = await driver.start(spec)
    await driver.exec(spec.instance_id, "nohup sleep 1000 >/dev/null 2>&1 &")
    sleeper = subprocess.run(
        ["pgrep", "-f", "sleep 1000"], capture_output=True, text=True
    ).stdout.split()
    await driver.destroy(spec.instance_id)
    assert _leftovers(driver, spec.instance_id) == []
    assert driver.state(spec.instance_id) == "absent"
    for pid in [*sleeper, str(info.pid)]:
        assert (
            not Path(f"/proc/{pid}").exists()
            or b"sleep 1000" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        )


async def test_killed_agent_is_detected(driver, instance):
    pid = await _host_pid_of_agent(driver, instance)
    # SIGSTOP: hung, the socket stays open; the ping must time out rather than hang.
    os.kill(pid, signal.SIGSTOP)
    await _all_threads_stopped(pid)
    t = time.monotonic()
    with pytest.raises(AgentUnavailable):
        await driver.ping(instance, timeout=0.5)
    assert time.monotonic() - t < 2
    client = await driver.agent(instance)
    await client.close()
    # Killed outright: calls fail fast with AgentUnavailable.
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    with pytest.raises((AgentUnavailable, InstanceNotRunning)):
        await asyncio.wait_for(driver.exec(instance, "true"), 5)


async def _all_threads_stopped(pid: int) -> None:
    """Wait until every thread of `pid` is in the group stop: on a loaded machine a thread that
    is not scheduled yet has not stopped, and could still answer the ping sent next."""
    states: list[str] = []
    for _ in range(500):
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
            states += [line for line in status.splitlines() if line.startswith("State:")]
        if all("(stopped)" in state for state in states):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"agent threads not stopped: {states}")


async def _host_pid_of_agent(driver, instance_id: str) -> int:
    """The host pid of the process that answers pings: the agent reports its pid in the
    instance's pid namespace, and /proc/<pid>/status (NSpid) maps host pids to that. (Matching
    command lines could pick a child forked from the agent before it exec'd.)"""
    inside = (await driver.ping(instance_id))["pid"]
    procs = Path("/sys/fs/cgroup/pids") / driver.cgroup_parent / instance_id / "cgroup.procs"
    for pid in procs.read_text().split():
        status = Path(f"/proc/{pid}/status").read_text()
        nspids = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        if len(nspids) > 1 and int(nspids[-1]) == inside:
            return int(pid)
    raise AssertionError("agent not found")


async def test_reconcile_removes_orphans_after_a_crash(driver, make_spec, tmp_path):
    from forkyard.node.drivers.sandbox import SandboxDriver

    keep, orphan = make_spec(), make_spec()
    await driver.start(keep)
    await driver.start(orphan)
    # Simulate a node SIGKILL: a fresh driver on the same data dir knows nothing of either.
    await driver.close()
    fresh = SandboxDriver(driver.data_dir, cgroup_parent=driver.cgroup_parent)
    owned = fresh.list_owned()
    assert {keep.instance_id, orphan.instance_id} <= owned
    report = await reconcile(fresh, keep={keep.instance_id})
    assert orphan.instance_id in report.removed
    assert _leftovers(fresh, orphan.instance_id) == []
    assert keep.instance_id in report.cleaned
    await fresh.start(keep)
    assert (await fresh.exec(keep.instance_id, "echo back")).stdout == b"back\n"
    await fresh.destroy(keep.instance_id)
    await fresh.close()  # gives back the uid ranges its boot made ready
    driver._running.clear()
