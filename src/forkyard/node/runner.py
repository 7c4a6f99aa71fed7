"""The node process: take the data dir's node lock, build the default image, start the driver
and the node API, register with the control plane, reconcile leftovers against what it says
should exist, then heartbeat. On stop (SIGTERM, SIGINT) it stops every sandbox and leaves
nothing on the host but its data dir: no process, mount, loop device or cgroup (ADR 0009)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from forkyard.node.drivers.sandbox import SandboxDriver
from forkyard.node.images import ensure_default_image
from forkyard.node.installation import NodeLock, default_cgroup_parent
from forkyard.node.port_relay import PortRelay
from forkyard.node.reconcile import reconcile
from forkyard.node.rpc import MAX_MESSAGE
from forkyard.node.server import create_node_app

log = logging.getLogger("forkyard.node")

HEARTBEAT_EVERY_S = 5.0
DRIVER_VERSION = "1"
# Instances booted again at once after a restart: more only queue on the 2 cores of a small
# server, and each boot's agent-ready timeout keeps running while it waits.
RESTART_CONCURRENCY = 4
CGROUP_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


@dataclass
class NodeConfig:
    control_plane: str
    token: str
    data_dir: Path
    name: str
    host: str = "127.0.0.1"
    port: int = 0
    advertise_host: str | None = None
    # The URL the control plane should call when it differs from what the node listens on (a
    # TLS-terminating proxy in front: https://node-3.example).
    advertise_url: str | None = None
    image_cache: Path | None = None
    slots: int = 500
    # None: forkyard-<installation id> (node/installation.py), so nodes of distinct installations
    # on one host never touch each other's cgroups. Two nodes must never share one.
    cgroup_parent: str | None = None
    # The port relay's port (node/port_relay.py), on `host`; 0: any free one. The control plane
    # asks the node API where it is, and reaches it on the host of the node's URL.
    relay_port: int = 0


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def capacity(data_dir: Path, slots: int, running: int) -> dict[str, Any]:
    st = os.statvfs(data_dir)
    return {
        "cpus": os.cpu_count() or 1,
        "memory_mb": _memory_mb(),
        "disk_mb": st.f_blocks * st.f_frsize // 2**20,
        "disk_free_mb": st.f_bavail * st.f_frsize // 2**20,
        "slots": max(0, slots - running),
        "running_instances": running,
    }


MACHINE_IMAGE_CACHE = Path("/var/cache/forkyard/images")


def image_cache_dir(cfg: NodeConfig) -> Path:
    """Images are shared by every node and checkout on a machine when we may write the machine
    cache (root); otherwise they live in the node's data dir."""
    if cfg.image_cache is not None:
        return cfg.image_cache
    if os.geteuid() == 0:
        return MACHINE_IMAGE_CACHE
    return cfg.data_dir / "images"


class Node:
    def __init__(self, config: NodeConfig, progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.progress = progress
        self.secret = secrets.token_urlsafe(32)
        self.driver: SandboxDriver | None = None
        self.server_id: str | None = None
        self.url: str | None = None
        self.relay_port = 0  # where the port relay listens, once started
        self._server: uvicorn.Server | None = None
        self._stop = asyncio.Event()

    @property
    def _credential_file(self) -> Path:
        return self.config.data_dir / "node-credential"

    def _credential(self) -> str | None:
        """This node's own credential from an earlier registration (kept across restarts, so
        the control plane knows it is the same node and not one taking its name)."""
        try:
            return self._credential_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _keep_credential(self, credential: str) -> None:
        tmp = self._credential_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credential)
        os.replace(tmp, self._credential_file)

    def _headers(self) -> dict[str, str]:
        # The cluster token only to join; every later call with this node's own credential.
        return {"Authorization": f"Bearer {self._credential() or self.config.token}"}

    def _states(self) -> dict[str, str]:
        """The state of every instance held here, but those being booted, stopped, captured or
        rolled back: a heartbeat computed mid-fork reported children not yet up as stopped,
        and when it landed after the fork had recorded them running they became vm_exited
        (15-24 of a fork of 50). The next heartbeat reports them."""
        driver = self.driver
        assert driver is not None
        return {i: driver.state(i) for i in driver.list_owned() if not driver.busy(i)}

    async def register(self, client: httpx.AsyncClient) -> dict[str, Any]:
        assert self.driver is not None
        states = self._states()
        running = sum(1 for s in states.values() if s == "running")
        body = {
            "name": self.config.name,
            "url": self.url,
            "secret": self.secret,
            "credential": self._credential(),
            "driver": self.driver.name,
            "driver_version": DRIVER_VERSION,
            "capacity": capacity(self.config.data_dir, self.config.slots, running),
            "instances": states,
        }
        r = await client.post(
            f"{self.config.control_plane}/v1/internal/servers/register",
            json=body,
            headers={"Authorization": f"Bearer {self.config.token}"},
        )
        r.raise_for_status()
        answer: dict[str, Any] = r.json()
        self.server_id = answer["server_id"]
        if answer.get("credential"):
            self._keep_credential(answer["credential"])
        return answer

    async def reconcile_with(
        self, desired: dict[str, str], keep_layers: list[str] | None = None
    ) -> None:
        """`desired` maps instance id -> running|stopped for everything that should exist here;
        `keep_layers` (when the control plane sends it) the layers to keep."""
        assert self.driver is not None
        keep = set(keep_layers) if keep_layers is not None else None
        report = await reconcile(self.driver, set(desired), keep_layers=keep)
        if report.removed_layers:
            log.info("reconcile swept layers: %s", sorted(report.removed_layers))
        if report.removed:
            log.info("reconcile removed orphans: %s", sorted(report.removed))
        gate = asyncio.Semaphore(RESTART_CONCURRENCY)

        async def restart(instance_id: str) -> None:
            assert self.driver is not None
            spec = self.driver.load_spec(instance_id)
            if spec is None:
                return
            async with gate:
                for attempt in (1, 2):  # a boot that timed out under load gets a second chance
                    try:
                        await self.driver.start(spec)
                        log.info("reconcile restarted %s", instance_id)
                        return
                    except Exception as exc:  # reported through the next heartbeat's states
                        log.warning(
                            "reconcile could not restart %s (%d): %s", instance_id, attempt, exc
                        )

        await asyncio.gather(
            *(
                restart(instance_id)
                for instance_id, want in desired.items()
                if want == "running" and self.driver.state(instance_id) != "running"
            )
        )

    async def heartbeat(self, client: httpx.AsyncClient) -> None:
        states = self._states()
        running = sum(1 for s in states.values() if s == "running")
        r = await client.post(
            f"{self.config.control_plane}/v1/internal/servers/{self.server_id}/heartbeat",
            json={
                "capacity": capacity(self.config.data_dir, self.config.slots, running),
                "instances": states,
            },
            headers=self._headers(),
        )
        if r.status_code == 404:  # the control plane forgot us (new database): register again
            answer = await self.register(client)
            await self.reconcile_with(answer.get("instances", {}), answer.get("layers"))
        else:
            r.raise_for_status()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        # One live node per data dir: a twin would kill and reboot this one's sandboxes.
        lock = NodeLock(cfg.data_dir)
        lock.acquire({"control_plane": cfg.control_plane, "name": cfg.name})
        try:
            await self._run_locked(ready)
        finally:
            lock.release()

    async def _run_locked(self, ready: asyncio.Event | None) -> None:
        cfg = self.config
        if cfg.cgroup_parent is None:
            cfg.cgroup_parent = default_cgroup_parent(cfg.data_dir)
        default_image = await asyncio.to_thread(
            ensure_default_image, cfg.data_dir, self.progress, cache_dir=image_cache_dir(cfg)
        )
        self.driver = SandboxDriver(cfg.data_dir, cgroup_parent=cfg.cgroup_parent)
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
        port = sock.getsockname()[1]
        self.url = cfg.advertise_url or f"http://{cfg.advertise_host or cfg.host}:{port}"
        relay = PortRelay(self.driver, self.secret)
        self.relay_port = await relay.start(cfg.host, cfg.relay_port)
        app = create_node_app(
            self.driver, self.secret, {"default": default_image}, relay_port=self.relay_port
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                ws_max_size=MAX_MESSAGE,  # the call channel carries exec output and files
            )
        )
        serve_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                while True:
                    try:
                        answer = await self.register(client)
                        break
                    except (httpx.HTTPError, OSError) as exc:
                        log.info("control plane not reachable yet (%s); retrying", exc)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), 0.5)
                        if self._stop.is_set():
                            return
                await self.reconcile_with(answer.get("instances", {}), answer.get("layers"))
                log.info("node %s registered as %s at %s", cfg.name, self.server_id, self.url)
                if ready is not None:
                    ready.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), HEARTBEAT_EVERY_S)
                    if self._stop.is_set():
                        break
                    try:
                        await self.heartbeat(client)
                    except (httpx.HTTPError, OSError) as exc:
                        log.warning("heartbeat failed: %s", exc)
        finally:
            self._server.should_exit = True
            await serve_task
            await relay.close()
            await self.shut_down()

    async def shut_down(self) -> None:
        """Stop every sandbox (disks stay: the next start of this node boots what should run),
        unmount the layer store, and remove this node's cgroup parent."""
        driver = self.driver
        assert driver is not None
        gate = asyncio.Semaphore(RESTART_CONCURRENCY)

        async def stop(instance_id: str) -> None:
            async with gate:
                try:
                    await driver.stop(instance_id)
                except Exception as exc:
                    log.warning("could not stop %s: %s", instance_id, exc)

        await asyncio.gather(*(stop(i) for i in driver.list_owned()))
        await driver.close()
        driver.release_store()
        for c in CGROUP_CONTROLLERS:
            with contextlib.suppress(FileNotFoundError):
                (Path("/sys/fs/cgroup") / c / driver.cgroup_parent).rmdir()
        log.info("node %s stopped its instances and left nothing mounted", self.config.name)

    def stop(self) -> None:
        self._stop.set()
