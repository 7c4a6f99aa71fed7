"""The namespace sandbox driver: bubblewrap + overlayfs on a loop-mounted disk + cgroup v1.

Layout of one instance, under <data_dir>/instances/<id>/:
    spec.json   the SandboxSpec it was last started with
    origin      the layer its disk was last cloned from or captured into (a checkpoint's parent)
    disk/       mount point of its disk image (nosuid, nodev), which holds upper/ and work/
    idmap/      the disk and each lower layer again, idmapped to the instance's uid range
    run/        the agent's socket (agent.sock): the node binds it and hands the agent the
                listening fd, so nothing inside the instance can see or replace it
    agent.log   the launcher's and agent's own stdout/stderr
Its root, the overlay of idmap/ (lower = layers + image, upper = the disk's upper/), is mounted
at /run/forkyard/roots/<node>/<id>: a path every uid can traverse, since bwrap resolves it as the
instance's unprivileged host uid (a data dir under a 0700 directory would be out of its reach).
Isolation: user namespace, capabilities and seccomp in node/isolation.py and node/seccomp.py
(ADR 0010).
The disk image itself (sparse, disk_mb) is <data_dir>/store/disks/<id>.img, on the layer store's
filesystem so checkpoints, rollbacks and forks are reflink clones of it (see node/layers.py);
an older instance may still have <data_dir>/instances/<id>/disk.img, which keeps working.
Cgroups: /sys/fs/cgroup/{memory,pids,cpu,cpuacct,freezer}/<cgroup_parent>/<id>.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import forkyard.guest
from forkyard.node import isolation, seccomp, storage
from forkyard.node.agent_client import AgentClient, short_socket_path
from forkyard.node.cgroups import InstanceCgroup, Limits, owned_names
from forkyard.node.drivers.base import (
    INSTANCE_ID_RE,
    Driver,
    InstanceInfo,
    InstanceState,
    InstanceStats,
    SandboxSpec,
)
from forkyard.node.egress import EgressManager, NetworkPolicy, link_addresses
from forkyard.node.errors import (
    AgentUnavailable,
    InstanceNotFound,
    InstanceNotRunning,
    NodeError,
    SandboxFailed,
)
from forkyard.node.layers import (
    LayerInfo,
    LayerInUse,
    LayerStore,
    StorageMode,
    check_layer_id,
    close_store,
    elapsed_ms,
    open_store,
)

GUEST_MOUNT = "/opt/forkyard/forkyard_guest"
SOCKET_NAME = "agent.sock"
ROOTS_DIR = Path("/run/forkyard/roots")
BOOT_TIMEOUT_S = 10.0
GUEST_PYTHON = "/usr/bin/python3"
# -I -S: no site-packages, no user env, no cwd on sys.path: the agent needs only the stdlib,
# and skipping site saves ~10 ms of boot.
AGENT_BOOT = (
    "import sys; sys.path.insert(0, '/opt/forkyard'); from forkyard_guest.agent import main; main()"
)
# The launcher joins the instance's cgroups itself, then becomes bwrap (through nsenter, inside
# the instance's user namespace as its root): every process of the instance is accounted and
# limited from its first instruction, and none is ever host root.
LAUNCHER = 'for c in $FORKYARD_CGROUPS; do echo $$ > "$c/cgroup.procs" || exit 121; done; exec "$@"'
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


class InstanceExists(NodeError):
    status_code = 409
    code = "instance_exists"
    message = "An instance with this id already exists on this node."


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
        store_mb: int | None = None,
    ) -> None:
        """`store_mb`: size of the XFS layer volume, made only when the data dir's filesystem
        has no reflink (a sparse file: it takes only what is written; default 90% of free)."""
        self.data_dir = Path(data_dir).resolve()
        self.instances_dir = self.data_dir / "instances"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir, mode, self.store_volume = open_store(self.data_dir, store_mb)
        self.layers = LayerStore(self.store_dir, mode)
        self._mount_lock = asyncio.Lock()
        self._blank_lock = asyncio.Lock()
        self.cgroup_parent = cgroup_parent
        self.bwrap = bwrap
        node_key = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        self.roots_dir = ROOTS_DIR / node_key
        self.roots_dir.mkdir(parents=True, exist_ok=True)
        for p in (ROOTS_DIR.parent, ROOTS_DIR, self.roots_dir):
            os.chmod(p, 0o711)  # noqa: S103 (traversable, not listable, by instances' host uids)
        self.guest_dir = self._install_guest(
            guest_dir or Path(forkyard.guest.__file__).resolve().parent
        )
        self._running: dict[str, _Running] = {}
        self._logs: dict[str, asyncio.Task[None]] = {}  # draining each sandbox's output
        self._locks: dict[str, asyncio.Lock] = {}
        self.network = EgressManager()  # egress links and rules (node/egress.py, ADR 0015)

    def _install_guest(self, source: Path) -> Path:
        """A root-owned copy of the guest agent's code, bound read-only into every instance: not
        the source tree itself, so nothing an instance does to its view can reach our code.
        Precompiled, so the agent does not compile at boot."""
        dest = self.roots_dir / ".guest"
        tmp = self.roots_dir / f".guest-{os.getpid()}"
        storage.remove_tree(tmp)
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(str(tmp), quiet=1, ddir=GUEST_MOUNT)
        for root, _dirs, files in os.walk(tmp):
            os.chmod(root, 0o755)  # noqa: S103 (readable code, writable by host root only)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        if dest.exists():
            old = self.roots_dir / f".guest-old-{os.getpid()}"
            os.replace(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, dest)
        return dest

    # --- paths ---
    def root_dir(self, instance_id: str) -> Path:
        """Where the instance's root (its overlay) is mounted on the host."""
        self.instance_dir(instance_id)  # validates the id
        return self.roots_dir / instance_id

    def _claim_owner(self, instance_id: str) -> str:
        return f"{self.data_dir}:{instance_id}"

    def instance_dir(self, instance_id: str) -> Path:
        if not INSTANCE_ID_RE.match(instance_id):
            raise InstanceNotFound(f"invalid instance id {instance_id!r}")
        return self.instances_dir / instance_id

    def cgroup(self, instance_id: str) -> InstanceCgroup:
        return InstanceCgroup(self.cgroup_parent, instance_id)

    def _lock(self, instance_id: str) -> asyncio.Lock:
        return self._locks.setdefault(instance_id, asyncio.Lock())

    def disk_image(self, instance_id: str) -> Path:
        legacy = self.instance_dir(instance_id) / "disk.img"
        if legacy.exists():
            return legacy
        return self.layers.disks_dir / f"{instance_id}.img"

    def storage_mode(self) -> StorageMode:
        """ "reflink": checkpoints/forks clone blocks; "copy": they copy bytes (no reflink fs)."""
        return self.layers.mode

    def origin(self, instance_id: str) -> str | None:
        try:
            return (self.instance_dir(instance_id) / "origin").read_text().strip() or None
        except FileNotFoundError:
            return None

    def _set_origin(self, instance_id: str, layer_id: str | None) -> None:
        path = self.instance_dir(instance_id) / "origin"
        if layer_id is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(layer_id)

    # --- lifecycle ---
    async def start(self, spec: SandboxSpec, *, from_layer: str | None = None) -> InstanceInfo:
        """Boot; with `from_layer`, a new instance whose disk is a clone of that layer (its
        image, layers and disk_mb then come from the layer; InstanceExists if it has a disk)."""
        async with self._lock(spec.instance_id):
            running = self._running.get(spec.instance_id)
            if from_layer is None:
                if running is not None and running.proc.returncode is None:
                    return running.info
                return await self._start(spec)
            return await self._start_from_layer(spec, from_layer)

    async def _start_from_layer(self, spec: SandboxSpec, layer_id: str) -> InstanceInfo:
        layer = self.layers.get(layer_id)
        d = self.instance_dir(spec.instance_id)
        disk = self.disk_image(spec.instance_id)
        if d.exists() or disk.exists():
            raise InstanceExists(f"instance {spec.instance_id} already exists")
        spec = _spec_on(spec, layer)
        try:
            d.mkdir()
            await asyncio.to_thread(self.layers.clone, layer.image, disk)
            self._set_origin(spec.instance_id, layer.layer_id)
            return await self._start(spec)
        except BaseException:
            await self._teardown(spec.instance_id)
            await asyncio.to_thread(self._remove_files, spec.instance_id)
            raise

    async def _start(self, spec: SandboxSpec) -> InstanceInfo:
        t0 = time.monotonic()
        d = self.instance_dir(spec.instance_id)
        fresh = not d.exists() and not self.disk_image(spec.instance_id).exists()
        d.mkdir(exist_ok=True)
        if not fresh:
            # Leftovers of a crashed node or a dead sandbox: no process may survive a new boot.
            # (A first boot has none: reconcile cleared what no instance owns at node start.)
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
            root=self.root_dir(spec.instance_id),
            boot_ms=round((time.monotonic() - t0) * 1000, 2),
            created_disk=created,
            origin=self.origin(spec.instance_id),
            layers=tuple(sorted(self.layers.lower_refs(spec.layers))),
        )
        self._running[spec.instance_id] = _Running(spec, proc, client, info)
        if spec.network.egress != "none":  # "none" costs nothing: no device, rule or process
            try:
                await self._apply_network(spec.instance_id, spec.network)
            except BaseException:
                await self._teardown(spec.instance_id)
                raise
        return info

    # --- egress (node/egress.py, ADR 0015): set up once the agent answers, dropped at stop ---
    async def _apply_network(self, instance_id: str, policy: NetworkPolicy) -> None:
        d = self.instance_dir(instance_id)
        slot = int((d / "uid-range").read_text())
        had_link = self.network.policy(instance_id) is not None
        if policy.egress != "none":
            (d / "egress-slot").write_text(str(slot))  # what teardown removes, even after a crash
        await self.network.apply(instance_id, slot, self.network_namespace(instance_id), policy)
        if policy.egress == "none":
            (d / "egress-slot").unlink(missing_ok=True)
        if policy.egress != "none" and not had_link:  # DNS inside: the node's relay
            client = await self.agent(instance_id)
            await client.write_file("/etc/resolv.conf", f"nameserver {link_addresses(slot)[0]}\n")

    async def set_network(self, instance_id: str, policy: NetworkPolicy) -> None:
        async with self._lock(instance_id):
            spec = self.load_spec(instance_id)
            if spec is None:
                raise InstanceNotFound(f"no instance {instance_id} on this node")
            if self.state(instance_id) == "running":
                await self._apply_network(instance_id, policy)
                running = self._running[instance_id]
                running.spec = replace(running.spec, network=policy)
            spec = replace(spec, network=policy)
            (self.instance_dir(instance_id) / "spec.json").write_text(json.dumps(spec.to_json()))

    async def _remove_network(self, instance_id: str) -> None:
        """Nothing to do (no process run) unless the instance had egress."""
        marker = self.instance_dir(instance_id) / "egress-slot"
        try:
            slot = int(marker.read_text())
        except (OSError, ValueError):
            return
        await self.network.remove(instance_id, slot)
        marker.unlink(missing_ok=True)

    async def _boot(
        self, spec: SandboxSpec, d: Path
    ) -> tuple[bool, asyncio.subprocess.Process, AgentClient]:
        disk = self.disk_image(spec.instance_id)
        created = not disk.exists()
        if created:
            await self._blank_disk(disk, spec.disk_mb)
        await storage.mount_disk(disk, d / "disk")
        # Made on the plain mount, so the instance's / is its root's (uid 0 on disk): through
        # the idmapped mount, host root's new directories would belong to nobody inside.
        for sub in ("upper", "work"):
            (d / "disk" / sub).mkdir(exist_ok=True)
        async with self._mount_lock:  # store layers in the stack are mounted read-only, once
            for layer_id in self.layers.lower_refs(spec.layers):
                await self.layers.mount(layer_id)
        cg = self.cgroup(spec.instance_id)
        cg.create(Limits(memory_mb=spec.memory_mb, vcpus=spec.vcpus, pids_max=spec.pids_max))
        rng = await asyncio.to_thread(
            isolation.claim_range, self._claim_owner(spec.instance_id), cg.procs_file()
        )
        (d / "uid-range").write_text(str(rng.slot))
        userns, mount_ns = await asyncio.to_thread(isolation.namespaces, rng)
        idmap = d / "idmap"
        isolation.idmapped_bind(d / "disk", idmap / "disk", mount_ns, readonly=False)
        lower = []
        for i, path in enumerate([*spec.layers, spec.image]):
            isolation.idmapped_bind(path, idmap / f"lower{i}", mount_ns, readonly=True)
            lower.append(idmap / f"lower{i}")
        root = self.root_dir(spec.instance_id)
        storage.mount_overlay(lower, idmap / "disk" / "upper", idmap / "disk" / "work", root)
        run_dir = d / "run"
        run_dir.mkdir(exist_ok=True, mode=0o700)
        sock = run_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filter_fd = seccomp.program_fd()
        try:
            with short_socket_path(str(sock)) as bind_to:
                listener.bind(bind_to)
            os.chmod(sock, 0o600)
            listener.listen(128)
            argv = self._bwrap_argv(spec, root, userns, filter_fd, listener.fileno())
            # Output goes through a pipe the node drains, not into a host file the sandbox
            # holds: whatever writes there (a process inside can ptrace the sandbox's init),
            # the host keeps at most LOG_MAX_BYTES of it.
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                LAUNCHER,
                "forkyard-launcher",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(listener.fileno(), filter_fd),
                env={
                    "FORKYARD_CGROUPS": " ".join(str(p) for p in cg.paths),
                    **BASE_ENV,
                },
            )
            assert proc.stdout is not None
            self._drain_log(spec.instance_id, proc.stdout, d / "agent.log")
        finally:
            listener.close()  # the agent holds it now; the node only connects
            os.close(filter_fd)
        try:
            client = await self._wait_for_agent(sock, proc, d)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return created, proc, client

    async def _blank_disk(self, disk: Path, disk_mb: int) -> None:
        """A new instance's disk: a reflink clone of an empty one formatted once per size.
        mkfs costs a process and ~10 ms on every boot; the clone, a fraction of a millisecond.
        (Clones share the filesystem UUID, as forks' disks already do; ext4 does not mind.)"""
        if self.layers.mode != "reflink":
            await storage.create_disk(disk, disk_mb)
            return
        blank = self.layers.store / "blank" / f"ext4-{disk_mb}mb.img"
        if not blank.exists():
            async with self._blank_lock:
                if not blank.exists():
                    blank.parent.mkdir(exist_ok=True)
                    await storage.create_disk(blank, disk_mb)  # complete, then renamed in
                    os.chmod(blank, 0o444)
        self.layers.clone(blank, disk)

    def _bwrap_argv(
        self, spec: SandboxSpec, root: Path, userns: int, filter_fd: int, agent_fd: int
    ) -> list[str]:
        """nsenter makes the launcher root of the instance's user namespace (its host uid is
        the range's first); bwrap then builds the sandbox as that unprivileged user: capabilities
        bounded to CAPABILITIES, no_new_privs, the seccomp filter (bwrap always sets
        no_new_privs; it loads the filter last, just before the agent starts)."""
        env = {**BASE_ENV, "HOSTNAME": spec.hostname or spec.instance_id, **spec.env}
        argv = [
            "nsenter", f"--user=/proc/{os.getpid()}/fd/{userns}", "--setuid=0", "--setgid=0",
            self.bwrap,
            "--bind", str(root), "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--tmpfs", "/tmp",  # noqa: S108 (the instance's own /tmp)
            "--ro-bind", str(self.guest_dir), GUEST_MOUNT,
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname", spec.hostname or spec.instance_id,
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--chdir", "/",
            "--cap-drop", "ALL",
        ]  # fmt: skip
        for cap in isolation.CAPABILITIES:
            argv += ["--cap-add", cap]
        argv += ["--seccomp", str(filter_fd)]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        argv += [GUEST_PYTHON, "-I", "-S", "-c", AGENT_BOOT, "--listen-fd", str(agent_fd)]
        return argv

    def _drain_log(self, instance_id: str, stream: asyncio.StreamReader, path: Path) -> None:
        task = asyncio.create_task(_keep_log(stream, path))
        self._logs[instance_id] = task  # a strong reference until it ends (at the pipe's EOF)

        def done(t: asyncio.Task[None]) -> None:
            if self._logs.get(instance_id) is t:
                del self._logs[instance_id]

        task.add_done_callback(done)

    async def _wait_for_agent(
        self, sock: Path, proc: asyncio.subprocess.Process, d: Path
    ) -> AgentClient:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        delay = 0.001
        while True:
            if proc.returncode is not None:
                log = self._logs.get(d.name)
                if log is not None:  # the sandbox's last words, before reading them
                    await asyncio.wait({log}, timeout=1.0)
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
        storage.thaw_fs(d / "disk")  # a capture interrupted by a crash may have left it frozen
        root = self.root_dir(instance_id)
        for mp in [*storage.mounts_under(root), *storage.mounts_under(d)]:
            storage.unmount(mp)
        with contextlib.suppress(OSError):
            root.rmdir()
        await self._remove_network(instance_id)  # its rules, while its slot is still claimed
        self._release_range(instance_id)
        cg.remove()

    def _release_range(self, instance_id: str) -> None:
        path = self.instance_dir(instance_id) / "uid-range"
        try:
            slot = int(path.read_text())
        except (OSError, ValueError):
            return
        isolation.release_range(isolation.UidRange(slot), self._claim_owner(instance_id))
        path.unlink(missing_ok=True)

    async def destroy(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._teardown(instance_id)
            await asyncio.to_thread(self._remove_files, instance_id)
        self._locks.pop(instance_id, None)

    def _remove_files(self, instance_id: str) -> None:
        storage.remove_tree(self.instance_dir(instance_id))
        for f in self.layers.disks_dir.glob(f"{instance_id}.img*"):
            if f.name.split(".", 1)[0] == instance_id:
                f.unlink(missing_ok=True)

    def busy(self, instance_id: str) -> bool:
        """Whether a start, stop, checkpoint or rollback of the instance is under way (its
        state is about to change: a report of it now would be stale on arrival)."""
        lock = self._locks.get(instance_id)
        return lock is not None and lock.locked()

    def state(self, instance_id: str) -> InstanceState:
        running = self._running.get(instance_id)
        if running is not None and running.proc.returncode is None:
            return "running"
        return "stopped" if self.instance_dir(instance_id).exists() else "absent"

    def info(self, instance_id: str) -> InstanceInfo:
        return self._require(instance_id).info

    def network_namespace(self, instance_id: str) -> str:
        """Read-only: the sandbox's network namespace, as the /proc path of bwrap's child (the
        instance's pid-namespace init; bwrap itself stays in the host's namespaces)."""
        running = self._require(instance_id)
        pid = running.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if not children:
            raise InstanceNotRunning()
        return f"/proc/{children[0]}/ns/net"

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
        """Every instance with anything on this host: files, a disk, cgroups, mounts, a root.
        (Works on a stopped node too, whose store volume is no longer mounted.)"""
        owned = {e.name for e in _entries(self.instances_dir) if INSTANCE_ID_RE.match(e.name)}
        owned |= {
            n
            for e in _entries(self.layers.disks_dir)
            if INSTANCE_ID_RE.match(n := e.name.split(".", 1)[0])
        }
        owned |= {n for n in owned_names(self.cgroup_parent) if INSTANCE_ID_RE.match(n)}
        for mp in storage.mounts_under(self.instances_dir):
            rel = mp.relative_to(self.instances_dir).parts
            if rel:
                owned.add(rel[0])
        owned |= {e.name for e in _entries(self.roots_dir) if INSTANCE_ID_RE.match(e.name)}
        return owned

    def load_spec(self, instance_id: str) -> SandboxSpec | None:
        try:
            data = json.loads((self.instance_dir(instance_id) / "spec.json").read_text())
        except (OSError, ValueError):
            return None
        return SandboxSpec.from_json(data)

    async def close(self) -> None:
        await self.network.close()
        for running in list(self._running.values()):
            await running.client.close()

    def release_store(self) -> None:
        """Unmount layers and the store volume, and drop this node's directory of roots with its
        copy of the guest code (for shutdown and tests; no instance may be up)."""
        close_store(self.store_dir)
        if not storage.mounts_under(self.roots_dir):
            shutil.rmtree(self.roots_dir, ignore_errors=True)

    # --- layers: checkpoint, rollback, fork ---
    async def checkpoint(self, instance_id: str, layer_id: str) -> LayerInfo:
        """Capture the instance's disk as a new immutable layer. A running instance is flushed,
        then frozen (cgroup freezer + FIFREEZE) only for the clone. On failure: thawed, no layer
        left, the instance keeps running, the error is raised."""
        check_layer_id(layer_id)
        async with self._lock(instance_id):
            return await self._checkpoint(instance_id, layer_id)

    async def _checkpoint(self, instance_id: str, layer_id: str) -> LayerInfo:
        t0 = time.monotonic()
        spec = self.load_spec(instance_id)
        disk = self.disk_image(instance_id)
        if spec is None or not disk.exists():
            raise InstanceNotFound(f"no instance {instance_id} on this node")
        mnt = self.instance_dir(instance_id) / "disk"
        mounted = storage.is_mountpoint(mnt)
        tmp = await asyncio.to_thread(self.layers.begin, layer_id)
        try:
            data_bytes = 0
            if mounted:
                data_bytes = storage.disk_usage(mnt)[0]
                # Flush the bulk while the instance still runs: the pause then only covers
                # what was written since.
                await asyncio.to_thread(storage.syncfs, mnt)
            pause_ms = await asyncio.to_thread(
                self._capture, instance_id, disk, tmp / "disk.img", mnt if mounted else None
            )
            info = self.layers.new_info(
                layer_id,
                parent=self.origin(instance_id),
                lower=(*spec.layers, spec.image),
                image=tmp / "disk.img",
                disk_mb=spec.disk_mb,
                data_bytes=data_bytes,
                source_instance=instance_id,
                pause_ms=pause_ms,
                capture_ms=elapsed_ms(t0),
            )
            await asyncio.to_thread(self.layers.commit, tmp, info)
        except BaseException:
            await asyncio.to_thread(self.layers.abort, tmp)
            raise
        self._set_origin(instance_id, layer_id)
        return info

    def _capture(self, instance_id: str, disk: Path, dest: Path, mnt: Path | None) -> float:
        """Freeze processes, make the disk image clean, clone it, thaw. Returns the pause in ms.

        Every writer of an instance's disk is a process of its cgroup (file calls go through the
        agent, which is one). Once the freezer reports FROZEN, nothing can change the
        filesystem: syncfs then writes out what the processes left dirty and checkpointing the
        journal makes the image clean: the same image FIFREEZE gives, without freeze_super's
        RCU grace periods (~40 ms of pause on this machine, against ~5). If the cgroup does not
        reach FROZEN (a task stuck in uninterruptible sleep) or the filesystem cannot checkpoint
        its journal (not ext4), FIFREEZE quiesces it instead."""
        cg = self.cgroup(instance_id)
        t = time.monotonic()
        cg_frozen = fs_frozen = False
        try:
            if mnt is not None:
                if cg.exists():
                    cg.freeze(True)
                    cg_frozen = True
                quiet = cg_frozen and _frozen(cg)
                if quiet:
                    storage.syncfs(mnt)
                if not (quiet and storage.checkpoint_journal(mnt)):
                    storage.freeze_fs(mnt)  # writes back and quiesces: a clean on-disk image
                    fs_frozen = True
            self.layers.clone(disk, dest)
        finally:
            if fs_frozen:
                storage.thaw_fs(mnt)  # type: ignore[arg-type]
            if cg_frozen:
                cg.freeze(False)
        return elapsed_ms(t)

    async def rollback(self, instance_id: str, layer_id: str) -> InstanceInfo | None:
        """The instance's filesystem becomes exactly the layer's: processes stop, the disk is
        replaced by a clone of the layer's, and a running instance boots again (memory is not
        kept). Returns the new InstanceInfo, or None for a stopped instance (it stays stopped).
        If the new disk cannot boot, the old disk and spec are put back and the error raised."""
        async with self._lock(instance_id):
            layer = self.layers.get(layer_id)
            spec = self.load_spec(instance_id)
            disk = self.disk_image(instance_id)
            if spec is None or not disk.exists():
                raise InstanceNotFound(f"no instance {instance_id} on this node")
            was_running = self.state(instance_id) == "running"
            old_origin = self.origin(instance_id)
            new = disk.with_name(disk.name + ".rollback")
            old = disk.with_name(disk.name + ".old")
            for f in (new, old):
                f.unlink(missing_ok=True)
            await asyncio.to_thread(self.layers.clone, layer.image, new)
            await self._teardown(instance_id)
            new_spec = _spec_on(spec, layer)
            os.replace(disk, old)
            os.replace(new, disk)
            self._set_origin(instance_id, layer_id)
            d = self.instance_dir(instance_id)
            (d / "spec.json").write_text(json.dumps(new_spec.to_json()))
            try:
                info = await self._start(new_spec) if was_running else None
            except BaseException:
                await self._teardown(instance_id)
                os.replace(old, disk)
                self._set_origin(instance_id, old_origin)
                (d / "spec.json").write_text(json.dumps(spec.to_json()))
                if was_running:
                    with contextlib.suppress(Exception):
                        await self._start(spec)
                raise
            await asyncio.to_thread(old.unlink, missing_ok=True)
            return info

    async def fork(
        self, parent_id: str, child_specs: list[SandboxSpec], *, layer_id: str | None = None
    ) -> list[InstanceInfo | Exception]:
        """Capture the parent once (as layer `layer_id`, generated if None; it stays in the
        store for the caller to keep or delete), then boot every child on a clone of it, in
        parallel. The parent keeps running. Each child's image, layers and disk_mb come from
        the parent; the result holds, in order, each child's InstanceInfo or its error (a child
        that failed leaves nothing behind)."""
        layer_id = check_layer_id(layer_id or f"fork-{uuid.uuid4().hex[:16]}")
        await self.checkpoint(parent_id, layer_id)
        results = await asyncio.gather(
            *(self.start(s, from_layer=layer_id) for s in child_specs), return_exceptions=True
        )
        out: list[InstanceInfo | Exception] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
            out.append(r)
        return out

    def get_layer(self, layer_id: str) -> LayerInfo:
        return self.layers.get(layer_id)

    def list_layers(self) -> list[LayerInfo]:
        return self.layers.all()

    def _references(self) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """layer id -> instances whose lower stack uses it, and -> layers stacked on it."""
        by_instance: dict[str, set[str]] = {}
        for instance_id in self.list_owned():
            spec = self.load_spec(instance_id)
            if spec is not None:
                for lid in self.layers.lower_refs(spec.layers):
                    by_instance.setdefault(lid, set()).add(instance_id)
        by_layer: dict[str, set[str]] = {}
        for layer in self.layers.all():
            for lid in self.layers.lower_refs(layer.lower):
                by_layer.setdefault(lid, set()).add(layer.layer_id)
        return by_instance, by_layer

    async def delete_layer(self, layer_id: str) -> None:
        """Delete a layer (LayerNotFound if absent); LayerInUse while an instance or another
        layer on this node stacks on it. Clones made from it (rollbacks, forks) do not count:
        their blocks stay theirs."""
        check_layer_id(layer_id)
        async with self._mount_lock:
            self.layers.get(layer_id)
            by_instance, by_layer = self._references()
            insts = sorted(by_instance.get(layer_id, ()))
            lays = sorted(by_layer.get(layer_id, ()))
            if insts or lays:
                raise LayerInUse(
                    f"layer {layer_id} is used by {', '.join(insts + lays)}",
                    instances=insts,
                    layers=lays,
                )
            await asyncio.to_thread(self.layers.remove, layer_id)

    async def sweep_layers(self, keep: set[str]) -> set[str]:
        """Remove every layer not in `keep` and not stacked under a kept layer or an instance
        of this node, and leftovers of interrupted captures. Returns the removed ids."""
        async with self._mount_lock:
            by_instance, _ = self._references()
            layers = {layer.layer_id: layer for layer in self.layers.all()}
            live = {lid for lid in keep | set(by_instance) if lid in layers}
            todo = list(live)
            while todo:  # everything below a live layer is live
                for lid in self.layers.lower_refs(layers[todo.pop()].lower):
                    if lid in layers and lid not in live:
                        live.add(lid)
                        todo.append(lid)
            removed = set(layers) - live
            for lid in sorted(removed):
                await asyncio.to_thread(self.layers.remove, lid)
            for leftover in self.layers.leftovers():
                await asyncio.to_thread(storage.remove_tree, leftover)
            return removed

    def layer_usage(self) -> dict[str, Any]:
        """The vm-storage report: mode, store space, each layer with what references it, and
        each instance's disk. Allocated bytes count reflink-shared blocks in every file that
        shares them; the store's used_bytes is the physical truth."""
        by_instance, by_layer = self._references()
        layers = []
        for layer in self.layers.all():
            layers.append(
                {
                    **layer.to_json(),
                    "allocated_bytes": storage.allocated_bytes(layer.image),
                    "mounted": storage.is_mountpoint(layer.path / "root"),
                    "referenced_by": {
                        "instances": sorted(by_instance.get(layer.layer_id, ())),
                        "layers": sorted(by_layer.get(layer.layer_id, ())),
                    },
                }
            )
        instances = []
        for instance_id in sorted(self.list_owned()):
            spec = self.load_spec(instance_id)
            instances.append(
                {
                    "instance_id": instance_id,
                    "state": self.state(instance_id),
                    "origin": self.origin(instance_id),
                    "layers": sorted(self.layers.lower_refs(spec.layers)) if spec else [],
                    "disk_allocated_bytes": storage.allocated_bytes(self.disk_image(instance_id)),
                }
            )
        return {
            "mode": self.storage_mode(),
            "volume": str(self.store_volume) if self.store_volume else None,
            "store": self.layers.usage(),
            "layers": layers,
            "instances": instances,
        }


def _spec_on(spec: SandboxSpec, layer: LayerInfo) -> SandboxSpec:
    """`spec` with the layer's lower stack and disk size (its disk will be the layer's clone)."""
    return replace(spec, layers=layer.lower[:-1], image=layer.lower[-1], disk_mb=layer.disk_mb)


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _frozen(cg: InstanceCgroup) -> bool:
    """Whether the freezer reports every task of the cgroup frozen (not merely FREEZING)."""
    try:
        return (cg.path("freezer") / "freezer.state").read_text().strip() == "FROZEN"
    except OSError:
        return False


LOG_MAX_BYTES = 1 << 20  # of one boot's output kept in agent.log; the rest is read and dropped


async def _keep_log(stream: asyncio.StreamReader, path: Path) -> None:
    """Write the sandbox's output to `path` (new for each boot), up to LOG_MAX_BYTES, and keep
    reading past that, so nothing inside ever blocks on a full pipe; ends when the last process
    holding the pipe is gone."""
    written = 0
    with open(path, "wb") as f:
        while chunk := await stream.read(65536):
            if written < LOG_MAX_BYTES:
                kept = chunk[: LOG_MAX_BYTES - written]
                f.write(kept)
                f.flush()
                written += len(kept)


def _tail(d: Path, n: int = 2000) -> str:
    try:
        return (d / "agent.log").read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""
