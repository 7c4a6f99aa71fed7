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
filesystem so checkpoints, rollbacks and forks are reflink clones of it (see node/layers/);
an older instance may still have <data_dir>/instances/<id>/disk.img, which keeps working.
Cgroups: /sys/fs/cgroup/{memory,pids,cpu,cpuacct,freezer}/<cgroup_parent>/<id>.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import forkyard.guest
from forkyard.node import isolation, seccomp, storage
from forkyard.node.agent_client import AgentClient, short_socket_path
from forkyard.node.cgroups import InstanceCgroup, Limits, owned_names
from forkyard.node.drivers.base import (
    INSTANCE_ID_RE,
    InstanceInfo,
    InstanceState,
    InstanceStats,
    SandboxSpec,
)
from forkyard.node.drivers.sandbox.launch import (
    GUEST_MOUNT,
    LOG_MAX_BYTES,
    SOCKET_NAME,
    Running,
    bwrap_argv,
    install_guest,
    keep_log,
    spawn,
    wait_for_agent,
)
from forkyard.node.drivers.sandbox.network import NetworkOps
from forkyard.node.drivers.sandbox.snapshots import LayerOps, _frozen, _spec_on
from forkyard.node.egress import EgressManager
from forkyard.node.errors import InstanceNotFound, InstanceNotRunning, NodeError, SandboxFailed
from forkyard.node.layers import LayerStore, StorageMode, close_store, open_store

# Imported from here by tests and benches (the package's public names).
__all__ = [
    "GUEST_MOUNT",
    "LOG_MAX_BYTES",
    "ROOTS_DIR",
    "InstanceExists",
    "SandboxDriver",
    "_frozen",
]

log = logging.getLogger(__name__)
ROOTS_DIR = Path("/run/forkyard/roots")
# Ranges made ready ahead of boots (isolation.RangePool): enough for back-to-back creates; a
# burst beyond it (a fork of many) makes its own, as every boot did before the pool.
READY_RANGES = 2


class InstanceExists(NodeError):
    status_code = 409
    code = "instance_exists"
    message = "An instance with this id already exists on this node."


class SandboxDriver(NetworkOps, LayerOps):
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
        self.guest_dir = install_guest(
            self.roots_dir, guest_dir or Path(forkyard.guest.__file__).resolve().parent
        )
        self._running: dict[str, Running] = {}
        self._logs: dict[str, asyncio.Task[None]] = {}  # draining each sandbox's output
        self._locks: dict[str, asyncio.Lock] = {}
        self.network = EgressManager()  # egress links and rules (node/egress.py, ADR 0015)
        self.ranges = isolation.RangePool(str(self.data_dir), size=READY_RANGES)
        self._refill: asyncio.Task[None] | None = None

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
        self._running[spec.instance_id] = Running(spec, proc, client, info)
        self._refill_ranges()
        if spec.network.egress != "none":  # "none" costs nothing: no device, rule or process
            try:
                await self._apply_network(spec.instance_id, spec.network)
            except BaseException:
                await self._teardown(spec.instance_id)
                raise
        return info

    async def _boot(
        self, spec: SandboxSpec, d: Path
    ) -> tuple[bool, asyncio.subprocess.Process, AgentClient]:
        disk = self.disk_image(spec.instance_id)
        created = not disk.exists()
        if created:
            await self._blank_disk(disk, spec.disk_mb)
        idmap = d / "idmap"

        async def identity() -> tuple[isolation.UidRange, list[Path]]:
            """Cgroups, the uid range and the idmapped lower layers: none needs the disk, so
            they are done while a worker thread loop-mounts it."""
            cg.create(Limits(memory_mb=spec.memory_mb, vcpus=spec.vcpus, pids_max=spec.pids_max))
            rng = await self._claim_range(spec.instance_id, cg)
            (d / "uid-range").write_text(str(rng.slot))  # what teardown releases
            async with self._mount_lock:  # store layers in the stack are mounted read-only, once
                for layer_id in self.layers.lower_refs(spec.layers):
                    await self.layers.mount(layer_id)
            mount_ns = isolation.namespaces(rng)[1]  # made by the claim: looked up here
            lower = []
            for i, path in enumerate([*spec.layers, spec.image]):
                isolation.idmapped_bind(path, idmap / f"lower{i}", mount_ns, readonly=True)
                lower.append(idmap / f"lower{i}")
            return rng, lower

        cg = self.cgroup(spec.instance_id)
        # Both run to their end before a failure is raised: the caller's teardown then finds
        # every mount and claim made, none still in the making.
        mounted, prepared = await asyncio.gather(
            storage.mount_disk(disk, d / "disk"), identity(), return_exceptions=True
        )
        for outcome in (mounted, prepared):
            if isinstance(outcome, BaseException):
                raise outcome
        assert not isinstance(prepared, BaseException)
        rng, lower = prepared
        userns, mount_ns = isolation.namespaces(rng)
        # Made on the plain mount, so the instance's / is its root's (uid 0 on disk): through
        # the idmapped mount, host root's new directories would belong to nobody inside.
        for sub in ("upper", "work"):
            (d / "disk" / sub).mkdir(exist_ok=True)
        isolation.idmapped_bind(d / "disk", idmap / "disk", mount_ns, readonly=False)
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
            argv = bwrap_argv(
                self.bwrap,
                spec,
                root,
                self.guest_dir,
                userns=userns,
                filter_fd=filter_fd,
                agent_fd=listener.fileno(),
            )
            proc = await spawn(argv, cg.paths, (listener.fileno(), filter_fd))
            assert proc.stdout is not None
            log = self._drain_log(spec.instance_id, proc.stdout, d / "agent.log")
        finally:
            listener.close()  # the agent holds it now; the node only connects
            os.close(filter_fd)
        try:
            client = await wait_for_agent(sock, proc, d, log)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return created, proc, client

    async def _claim_range(self, instance_id: str, cg: InstanceCgroup) -> isolation.UidRange:
        """The instance's host uid range, with its namespaces made: a ready one from the pool
        (the pool is then topped up in the background), else claimed and made now."""
        owner = self._claim_owner(instance_id)
        rng = self.ranges.take(owner, cg.procs_file())
        if rng is None:
            rng = await asyncio.to_thread(isolation.claim_range, owner, cg.procs_file())
            try:
                await asyncio.to_thread(isolation.namespaces, rng)
            except BaseException:
                isolation.release_range(rng, owner)
                raise
        return rng

    def _refill_ranges(self) -> None:
        """Top the pool of ready ranges up, in a worker thread, unless already under way.
        Called once a boot is done, so the refill's child processes do not compete with it."""
        if self._refill is not None and not self._refill.done():
            return
        task = asyncio.create_task(asyncio.to_thread(self.ranges.fill))
        task.add_done_callback(_log_refill_failure)
        self._refill = task

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

    def _drain_log(
        self, instance_id: str, stream: asyncio.StreamReader, path: Path
    ) -> asyncio.Task[None]:
        task = asyncio.create_task(keep_log(stream, path))
        self._logs[instance_id] = task  # a strong reference until it ends (at the pipe's EOF)

        def done(t: asyncio.Task[None]) -> None:
            if self._logs.get(instance_id) is t:
                del self._logs[instance_id]

        task.add_done_callback(done)
        return task

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

    def _require(self, instance_id: str) -> Running:
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
        if self._refill is not None:
            with contextlib.suppress(Exception):  # already logged
                await self._refill
        await asyncio.to_thread(self.ranges.close)  # ready ranges go back to the host

    def release_store(self) -> None:
        """Unmount layers and the store volume, and drop this node's directory of roots with its
        copy of the guest code (for shutdown and tests; no instance may be up)."""
        close_store(self.store_dir)
        if not storage.mounts_under(self.roots_dir):
            shutil.rmtree(self.roots_dir, ignore_errors=True)


def _log_refill_failure(task: asyncio.Task[None]) -> None:
    """A failed refill costs only speed (the next boot makes its own namespaces): logged."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not prepare uid ranges ahead: %s", task.exception())


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []
