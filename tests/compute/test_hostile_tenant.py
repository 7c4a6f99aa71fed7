"""A hostile tenant, through the public API only: root inside an instance holds no power over
the host, the node or other tenants. Each attack runs as an exec an API key may send; each must
fail, and what it aims at on the host stays as it was. (ADR 0010 says why each holds.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx

from forkyard.node import isolation
from tests.compute.conftest import Platform, create_running, wait_status
from tests.helpers import error_code

# The capabilities root of an instance has (node/isolation.py): CAP_SYS_ADMIN and every other
# capability that reaches beyond the instance's own namespaces are missing.
CAP_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
CAP_SYS_ADMIN = 21


async def sh(api: httpx.AsyncClient, iid: str, command: str) -> dict[str, Any]:
    r = await api.post(f"/v1/instances/{iid}/exec", json={"command": command, "timeout_s": 60})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def must_fail(api: httpx.AsyncClient, iid: str, command: str) -> str:
    out = await sh(api, iid, command)
    assert out["exit_code"] != 0, f"{command!r} succeeded inside the instance: {out}"
    return str(out["stderr"])


def status_field(status: str, name: str) -> str:
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/self/status")


async def test_root_inside_is_nobody_on_the_host(platform: Platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    status = (await sh(api, iid, "cat /proc/self/status"))["stdout"]
    eff = int(status_field(status, "CapEff"), 16)
    assert eff == sum(1 << b for b in CAP_BITS.values()), hex(eff)
    assert not eff & (1 << CAP_SYS_ADMIN)
    assert int(status_field(status, "CapPrm"), 16) == eff
    assert status_field(status, "NoNewPrivs") == "1"
    assert status_field(status, "Seccomp") == "2"  # a filter is loaded
    # Root inside is a host id far from root, in a range of 65536 ids; no host id 0 inside.
    inside, host, count = (await sh(api, iid, "cat /proc/self/uid_map"))["stdout"].split()
    assert (inside, count) == ("0", "65536") and int(host) >= isolation.FIRST_HOST_ID
    assert (await sh(api, iid, "cat /proc/self/gid_map"))["stdout"].split()[1] == host
    # ... and so it is seen from the host: every process of the instance runs as that host uid.
    driver = platform.node.driver
    assert driver is not None
    host_pids = driver.cgroup(iid).pids()  # type: ignore[attr-defined]
    assert host_pids and {os.stat(f"/proc/{pid}").st_uid for pid in host_pids} == {int(host)}

    # Files keep their ownership inside (root's are root's, others' are theirs).
    out = await sh(
        api, iid, "touch /root/f && chown 1000:1000 /root/f && stat -c %u:%g /etc/passwd /root/f"
    )
    assert out["stdout"].split() == ["0:0", "1000:1000"], out

    # A second instance (another tenant's, or the same org's) has a range of its own.
    other = (await create_running(api))["id"]
    other_host = (await sh(api, other, "cat /proc/self/uid_map"))["stdout"].split()[1]
    assert abs(int(other_host) - int(host)) >= 65536


async def test_host_and_kernel_settings_are_out_of_reach(platform: Platform, tmp_path: Path):
    api = platform.api
    iid = (await create_running(api))["id"]
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    guest_dir = platform.node.driver.guest_dir  # type: ignore[union-attr]
    guest_files = {p: p.read_bytes() for p in guest_dir.rglob("*.py")}

    # The guest agent's code: read-only, and no remount makes it writable.
    await must_fail(api, iid, "touch /opt/forkyard/forkyard_guest/planted")
    await must_fail(api, iid, "mount -o remount,rw,bind /opt/forkyard/forkyard_guest")
    await must_fail(api, iid, "umount /opt/forkyard/forkyard_guest")
    await must_fail(api, iid, "echo x >> /opt/forkyard/forkyard_guest/agent.py")
    # Kernel settings, through /proc/sys (also after trying to unmount what hides it).
    await must_fail(api, iid, "umount /proc/sys")
    await must_fail(api, iid, "umount -l /proc")
    await must_fail(api, iid, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern")
    await must_fail(api, iid, "echo 3 > /proc/sys/vm/drop_caches")
    await must_fail(api, iid, "echo b > /proc/sysrq-trigger")
    await must_fail(api, iid, "echo 1 > /sys/kernel/profiling")  # no sysfs inside at all
    await must_fail(api, iid, "ls /sys/block/* /sys/fs/cgroup/*")
    # New mounts of anything: proc, sysfs, a tmpfs where device nodes could live.
    await must_fail(api, iid, "mkdir -p /mnt/p && mount -t proc proc /mnt/p")
    await must_fail(api, iid, "mkdir -p /mnt/s && mount -t sysfs sys /mnt/s")
    await must_fail(api, iid, "mkdir -p /mnt/t && mount -t tmpfs -o dev t /mnt/t")
    await must_fail(api, iid, "mount --bind / /mnt")
    # Devices: none can be made, none of the host's block devices exist.
    await must_fail(api, iid, "mknod /tmp/disk b 8 0")
    await must_fail(api, iid, "mknod /root/disk b 7 0")
    await must_fail(api, iid, "mknod /tmp/mem c 1 1")
    out = await sh(
        api,
        iid,
        'for f in $(find /dev /run /tmp /root 2>/dev/null); do [ -L "$f" ] && continue;'
        ' [ -b "$f" ] && echo "block $f"; [ -c "$f" ] && echo "$f"; done | sort',
    )
    assert out["stdout"].split() == [
        "/dev/full",
        "/dev/null",
        "/dev/pts/ptmx",
        "/dev/random",
        "/dev/tty",
        "/dev/urandom",
        "/dev/zero",
    ], out
    # The kernel: its log, modules, and the calls the seccomp filter denies.
    await must_fail(api, iid, "dmesg")
    await must_fail(api, iid, "cat /dev/kmsg")
    denied = await sh(
        api,
        iid,
        "python3 - <<'EOF'\n"
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "calls = {'init_module': (175, 0, 0, 0), 'finit_module': (313, 0, 0, 0),\n"
        "         'bpf': (321, 0, 0, 0), 'perf_event_open': (298, 0, 0, -1, -1, 0),\n"
        "         'keyctl': (250, 0, 0), 'add_key': (248, 0, 0, 0, 0, 0),\n"
        "         'userfaultfd': (323, 0), 'kexec_load': (246, 0, 0, 0, 0),\n"
        "         'open_by_handle_at': (304, 0, 0, 0), 'io_uring_setup': (425, 1, 0),\n"
        "         'unshare_user': (272, 0x10000000), 'clone_user': (56, 0x10000000 | 17, 0, 0, 0, 0),\n"
        "         'setns': (308, 0, 0), 'syslog': (103, 3, 0, 0)}\n"
        "for name, args in calls.items():\n"
        "    r = libc.syscall(*[ctypes.c_long(a) for a in args])\n"
        "    print(name, r, errno.errorcode.get(ctypes.get_errno()))\n"
        "EOF",
    )
    lines = dict(line.split(" ", 1) for line in denied["stdout"].splitlines())
    assert len(lines) == 14, denied
    for name, result in lines.items():
        assert result == "-1 EPERM", (name, result)
    await must_fail(api, iid, "unshare --user --map-root-user true")
    await must_fail(api, iid, "unshare --mount true")
    # Other processes: only the instance's own are visible (its own pid namespace).
    pids = (await sh(api, iid, "ls /proc | grep -c '^[0-9]'"))["stdout"]
    assert int(pids) < 10, pids
    assert "bwrap" in (await sh(api, iid, "tr '\\0' ' ' < /proc/1/cmdline"))["stdout"]
    # The node's environment: the sandbox never had it (a marker set in this process, where
    # the node runs, appears in no process inside).
    os.environ["FORKYARD_HOSTILE_MARKER"] = "secret-marker-7f3a"
    try:
        other = (await create_running(api))["id"]
        out = await sh(api, other, "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
        assert "secret-marker-7f3a" not in out["stdout"]
    finally:
        del os.environ["FORKYARD_HOSTILE_MARKER"]
    # A chroot escape ends at the instance's own root, which has nothing of the host's.
    out = await sh(
        api,
        iid,
        "python3 -c \"import os\nos.makedirs('/tmp/jail', exist_ok=True); os.chroot('/tmp/jail')\n"
        "for _ in range(64): os.chdir('..')\nos.chroot('.'); print(sorted(os.listdir('/')))\"",
    )
    assert out["exit_code"] == 0 and "'opt'" in out["stdout"], out
    assert "'work'" not in out["stdout"] and "'pytest-of-root'" not in out["stdout"]

    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    assert {p: p.read_bytes() for p in guest_dir.rglob("*.py")} == guest_files
    assert not (guest_dir / "planted").exists()


async def test_setuid_files_give_no_power_on_the_host(platform: Platform):
    api = platform.api
    iid = (await create_running(api))["id"]
    out = await sh(api, iid, "cp /bin/sh /usr/local/bin/rootsh && chmod 4755 /usr/local/bin/rootsh")
    assert out["exit_code"] == 0, out
    driver = platform.node.driver
    assert driver is not None
    root = driver.root_dir(iid)  # type: ignore[attr-defined]
    # Every mount of the instance on the host is nosuid and nodev: its disk (where the file is
    # owned by plain uid 0), its idmapped views and its root.
    mounts = [
        line.split()
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith((str(driver.instance_dir(iid)), str(root)))  # type: ignore[attr-defined]
    ]
    assert len(mounts) >= 3
    for m in mounts:
        assert {"nosuid", "nodev"} <= set(m[5].split(",")), m
    # A host user running the file through the instance's root stays who they were.
    ran = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         str(root / "usr/local/bin/rootsh"), "-c", "id -u"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0 and ran.stdout.strip() == "65534", ran


async def test_the_agent_socket_cannot_be_planted(platform: Platform):
    """The node connects to a socket it bound itself, outside the instance: a symlink or socket
    planted where the agent's socket used to be changes nothing, across restarts."""
    api = platform.api
    iid = (await create_running(api))["id"]
    out = await sh(
        api,
        iid,
        "mkdir -p /run/forkyard && ln -sf /proc/1/root/run/forkyard /run/forkyard/agent.sock"
        " && ls -la /run/forkyard",
    )
    assert out["exit_code"] == 0, out
    driver = platform.node.driver
    assert driver is not None
    sock = driver.instance_dir(iid) / "run" / "agent.sock"  # type: ignore[attr-defined]
    assert sock.is_socket() and not sock.is_symlink()
    assert (await api.post(f"/v1/instances/{iid}/vm/restart")).status_code == 200
    await wait_status(api, iid, "running")
    assert (await sh(api, iid, "echo ok"))["stdout"] == "ok\n"
    assert sock.is_socket() and not sock.is_symlink()


async def test_no_api_input_names_a_host_path(platform: Platform):
    api = platform.api
    for image in ("/", "/etc", "../x", "a/b", "no-such-image", "scratch"):
        r = await api.post("/v1/instances", json={"image": image, "memory_mb": 256})
        assert r.status_code == 422 and error_code(r) == "validation_failed", (image, r.text)
        assert "/var/" not in r.text and "/tmp/" not in r.text
    listed = (await api.get("/v1/instances")).json()["data"]
    assert listed == []


async def test_the_sandbox_output_cannot_fill_the_host(platform: Platform):
    """The sandbox's own output (its init's stdout, which a process inside can reopen through
    /proc/1/fd) reaches the host through a pipe the node drains: at most LOG_MAX_BYTES are kept
    and the instance keeps working."""
    from forkyard.node.drivers.sandbox import LOG_MAX_BYTES

    api = platform.api
    iid = (await create_running(api))["id"]
    out = await sh(api, iid, "head -c 50000000 /dev/zero > /proc/1/fd/1; echo $?")
    assert out["exit_code"] == 0, out
    driver = platform.node.driver
    assert driver is not None
    log = driver.instance_dir(iid) / "agent.log"  # type: ignore[attr-defined]
    assert log.stat().st_size <= LOG_MAX_BYTES
    assert (await sh(api, iid, "echo still"))["stdout"] == "still\n"
