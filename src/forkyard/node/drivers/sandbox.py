"""The namespace sandbox driver: bubblewrap + overlayfs on a loop-mounted disk + cgroup v1.

Layout of one instance, all under <data_dir>/instances/<id>/:
    spec.json   the SandboxSpec it was last started with
    disk.img    sparse disk image (disk_mb), loop-mounted at disk/ ; holds upper/ and work/
    merged/     the overlay (lower = layers + image, upper = disk/upper), the instance's /
    run/        bound at /run/forkyard inside; the agent listens on run/agent.sock
    agent.log   the launcher's and agent's own stdout/stderr
and cgroups /sys/fs/cgroup/{memory,pids,cpu,cpuacct,freezer}/<cgroup_parent>/<id>.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import forkyard.guest
from forkyard.node import storage
from forkyard.node.agent_client import AgentClient
from forkyard.node.cgroups import InstanceCgroup, Limits, owned_names
from forkyard.node.drivers.base import (
    INSTANCE_ID_RE,
    Driver,
    InstanceInfo,
    InstanceState,
    InstanceStats,
    SandboxSpec,
)
from forkyard.node.errors import (
    AgentUnavailable,
    InstanceNotFound,
    InstanceNotRunning,
    SandboxFailed,
)

GUEST_MOUNT = "/opt/forkyard/forkyard_guest"
SOCKET_DIR_INSIDE = "/run/forkyard"
SOCKET_NAME = "agent.sock"
BOOT_TIMEOUT_S = 10.0
GUEST_PYTHON = "/usr/bin/python3"
# -I -S: no site-packages, no user env, no cwd on sys.path: the agent needs only the stdlib,
# and skipping site saves ~10 ms of boot.
AGENT_BOOT = (
    "import sys; sys.path.insert(0, '/opt/forkyard'); from forkyard_guest.agent import main; main()"
)
# The launcher joins the instance's cgroups itself, then becomes bwrap: every process of the
# instance is accounted and limited from its first instruction.
LAUNCHER = 'for c in $FORKYARD_CGROUPS; do echo $$ > "$c/cgroup.procs" || exit 121; done; exec "$@"'
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


@dataclass
class _Running:
    spec: SandboxSpec
    proc: asyncio.subprocess.Process
    client: AgentClient
    info: InstanceInfo


class SandboxDriver(Driver):
    name = "sandbox"

    def __init__(
        self,
        data_dir: Path,
        *,
        cgroup_parent: str = "forkyard",
        bwrap: str = "bwrap",
        guest_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.instances_dir = self.data_dir / "instances"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.cgroup_parent = cgroup_parent
        self.bwrap = bwrap
        self.guest_dir = guest_dir or Path(forkyard.guest.__file__).resolve().parent
        # The guest dir is bound read-only: precompile so the agent does not compile at boot.
        compileall.compile_dir(str(self.guest_dir), quiet=1)
        self._running: dict[str, _Running] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- paths ---
    def instance_dir(self, instance_id: str) -> Path:
        if not INSTANCE_ID_RE.match(instance_id):
            raise InstanceNotFound(f"invalid instance id {instance_id!r}")
        return self.instances_dir / instance_id

    def cgroup(self, instance_id: str) -> InstanceCgroup:
        return InstanceCgroup(self.cgroup_parent, instance_id)

    def _lock(self, instance_id: str) -> asyncio.Lock:
        return self._locks.setdefault(instance_id, asyncio.Lock())

    # --- lifecycle ---
    async def start(self, spec: SandboxSpec) -> InstanceInfo:
        async with self._lock(spec.instance_id):
            running = self._running.get(spec.instance_id)
            if running is not None and running.proc.returncode is None:
                return running.info
            return await self._start(spec)

    async def _start(self, spec: SandboxSpec) -> InstanceInfo:
        t0 = time.monotonic()
        d = self.instance_dir(spec.instance_id)
        d.mkdir(exist_ok=True)
        # Leftovers of a crashed node or a dead sandbox: no process may survive a new boot.
        await self._teardown(spec.instance_id)
        (d / "spec.json").write_text(json.dumps(spec.to_json()))
        try:
            created, proc, client = await self._boot(spec, d)
        except BaseException:
            await self._teardown(spec.instance_id)
            raise
        info = InstanceInfo(
            instance_id=spec.instance_id,
            pid=proc.pid,
            agent_socket=d / "run" / SOCKET_NAME,
            root=d / "merged",
            boot_ms=round((time.monotonic() - t0) * 1000, 2),
            created_disk=created,
        )
        self._running[spec.instance_id] = _Running(spec, proc, client, info)
        return info

    async def _boot(
        self, spec: SandboxSpec, d: Path
    ) -> tuple[bool, asyncio.subprocess.Process, AgentClient]:
        disk = d / "disk.img"
        created = not disk.exists()
        if created:
            await storage.create_disk(disk, spec.disk_mb)
        await storage.mount_disk(disk, d / "disk")
        lower = [*spec.layers, spec.image]
        storage.mount_overlay(lower, d / "disk" / "upper", d / "disk" / "work", d / "merged")
        run_dir = d / "run"
        run_dir.mkdir(exist_ok=True)
        sock = run_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        cg = self.cgroup(spec.instance_id)
        cg.create(Limits(memory_mb=spec.memory_mb, vcpus=spec.vcpus, pids_max=spec.pids_max))
        argv = self._bwrap_argv(spec, d)
        with open(d / "agent.log", "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                LAUNCHER,
                "forkyard-launcher",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"FORKYARD_CGROUPS": " ".join(str(p) for p in cg.paths), **BASE_ENV},
            )
        try:
            client = await self._wait_for_agent(sock, proc, d)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return created, proc, client

    def _bwrap_argv(self, spec: SandboxSpec, d: Path) -> list[str]:
        env = {**BASE_ENV, "HOSTNAME": spec.hostname or spec.instance_id, **spec.env}
        argv = [
            self.bwrap,
            "--bind", str(d / "merged"), "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--tmpfs", "/tmp",  # noqa: S108 (the instance's own /tmp)
            "--ro-bind", str(self.guest_dir), GUEST_MOUNT,
            "--bind", str(d / "run"), SOCKET_DIR_INSIDE,
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", spec.hostname or spec.instance_id,
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--chdir", "/",
        ]  # fmt: skip
        for k, v in env.items():
            argv += ["--setenv", k, v]
        argv += [
            GUEST_PYTHON, "-I", "-S", "-c", AGENT_BOOT,
            "--socket", f"{SOCKET_DIR_INSIDE}/{SOCKET_NAME}",
        ]  # fmt: skip
        return argv

    async def _wait_for_agent(
        self, sock: Path, proc: asyncio.subprocess.Process, d: Path
    ) -> AgentClient:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        delay = 0.001
        while True:
            if proc.returncode is not None:
                raise SandboxFailed(f"sandbox exited with {proc.returncode}: {_tail(d)}")
            if sock.exists():
                try:
                    client = await AgentClient.connect(str(sock), timeout=1.0)
                    await client.ping(timeout=2.0)
                    return client
                except AgentUnavailable:
                    pass
            if time.monotonic() > deadline:
                raise SandboxFailed(f"agent not ready after {BOOT_TIMEOUT_S}s: {_tail(d)}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.004)

    async def stop(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._teardown(instance_id)

    async def _teardown(self, instance_id: str) -> None:
        """Kill every process, close the agent, unmount, drop cgroups. Safe on any leftover."""
        running = self._running.pop(instance_id, None)
        if running is not None:
            await running.client.close()
        cg = self.cgroup(instance_id)
        if running is not None and running.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                running.proc.kill()  # the pid-namespace init: takes the whole sandbox down
        if not await asyncio.to_thread(cg.kill_all):
            raise SandboxFailed(f"processes of {instance_id} would not die")
        if running is not None:
            await running.proc.wait()
        d = self.instance_dir(instance_id)
        for mp in storage.mounts_under(d):
            storage.unmount(mp)
        cg.remove()

    async def destroy(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._teardown(instance_id)
            await asyncio.to_thread(storage.remove_tree, self.instance_dir(instance_id))
        self._locks.pop(instance_id, None)

    def state(self, instance_id: str) -> InstanceState:
        running = self._running.get(instance_id)
        if running is not None and running.proc.returncode is None:
            return "running"
        return "stopped" if self.instance_dir(instance_id).exists() else "absent"

    def info(self, instance_id: str) -> InstanceInfo:
        return self._require(instance_id).info

    def _require(self, instance_id: str) -> _Running:
        running = self._running.get(instance_id)
        if running is None or running.proc.returncode is not None:
            if self.instance_dir(instance_id).exists():
                raise InstanceNotRunning(f"instance {instance_id} is not running")
            raise InstanceNotFound(f"no instance {instance_id} on this node")
        return running

    async def agent(self, instance_id: str) -> AgentClient:
        running = self._require(instance_id)
        if running.client.closed:  # reconnect once: the agent may have dropped the stream
            running.client = await AgentClient.connect(str(running.info.agent_socket))
        return running.client

    async def stats(self, instance_id: str) -> InstanceStats:
        self._require(instance_id)
        cg = self.cgroup(instance_id)
        mem = cg.memory_stat()
        used, total = storage.disk_usage(self.instance_dir(instance_id) / "disk")
        return InstanceStats(
            cpu_seconds=(cg.read_int("cpuacct", "cpuacct.usage") or 0) / 1e9,
            memory_bytes=cg.read_int("memory", "memory.usage_in_bytes") or 0,
            memory_rss_bytes=mem.get("total_rss", mem.get("rss", 0)),
            memory_limit_bytes=cg.read_int("memory", "memory.limit_in_bytes") or 0,
            disk_used_bytes=used,
            disk_total_bytes=total,
            pids=cg.read_int("pids", "pids.current") or 0,
            pids_max=cg.read_int("pids", "pids.max"),
        )

    async def flush(self, instance_id: str) -> None:
        self._require(instance_id)
        await asyncio.to_thread(storage.syncfs, self.instance_dir(instance_id) / "disk")

    def list_owned(self) -> set[str]:
        owned = {e.name for e in self.instances_dir.iterdir() if INSTANCE_ID_RE.match(e.name)}
        owned |= {n for n in owned_names(self.cgroup_parent) if INSTANCE_ID_RE.match(n)}
        for mp in storage.mounts_under(self.instances_dir):
            rel = mp.relative_to(self.instances_dir).parts
            if rel:
                owned.add(rel[0])
        return owned

    def load_spec(self, instance_id: str) -> SandboxSpec | None:
        try:
            data = json.loads((self.instance_dir(instance_id) / "spec.json").read_text())
        except (OSError, ValueError):
            return None
        return SandboxSpec.from_json(data)

    async def close(self) -> None:
        for running in list(self._running.values()):
            await running.client.close()


def _tail(d: Path, n: int = 2000) -> str:
    try:
        return (d / "agent.log").read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""
