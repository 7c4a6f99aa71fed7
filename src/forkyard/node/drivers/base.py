"""The driver interface the node calls: lifecycle, layers (checkpoint, rollback, fork, the
store), and exec and files through the guest agent. The node's API calls nothing else of a
driver (ADR 0012), so a microVM driver plugs in by implementing this class."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from forkyard.node.agent_client import (
    DEFAULT_MAX_OUTPUT,
    AgentClient,
    Command,
    EditResult,
    ExecResult,
    ExecStream,
    FileInfo,
    FileReader,
)
from forkyard.node.egress import NetworkPolicy
from forkyard.node.errors import InstanceNotRunning, SandboxFailed
from forkyard.node.storage import INSTANCE_ID_RE

if TYPE_CHECKING:  # node/layers/ imports this module
    from forkyard.node.layers import LayerInfo, LayerStore

InstanceState = Literal["running", "stopped", "absent"]


@dataclass(frozen=True)
class SandboxSpec:
    """What to boot. `layers` stack above the image (topmost first): snapshots later."""

    instance_id: str
    image: Path
    vcpus: float = 1
    memory_mb: int = 512
    disk_mb: int = 1024
    env: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    pids_max: int = 512
    layers: tuple[Path, ...] = ()
    network: NetworkPolicy = field(default_factory=NetworkPolicy)  # egress (node/egress.py)

    def __post_init__(self) -> None:
        if not INSTANCE_ID_RE.match(self.instance_id):
            raise ValueError(f"invalid instance id {self.instance_id!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "image": str(self.image),
            "vcpus": self.vcpus,
            "memory_mb": self.memory_mb,
            "disk_mb": self.disk_mb,
            "env": self.env,
            "hostname": self.hostname,
            "pids_max": self.pids_max,
            "layers": [str(p) for p in self.layers],
            "network": self.network.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxSpec:
        return cls(
            instance_id=d["instance_id"],
            image=Path(d["image"]),
            vcpus=d["vcpus"],
            memory_mb=d["memory_mb"],
            disk_mb=d["disk_mb"],
            env=d.get("env") or {},
            hostname=d.get("hostname"),
            pids_max=d.get("pids_max", 512),
            layers=tuple(Path(p) for p in d.get("layers") or ()),
            network=NetworkPolicy.from_json(d.get("network")),
        )


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    pid: int  # host pid of the launcher (bwrap)
    agent_socket: Path
    root: Path  # the instance's merged root filesystem, as seen from the host
    boot_ms: float  # start() until the agent answered
    created_disk: bool  # this start formatted a new disk
    origin: str | None = None  # the layer its disk was last cloned from or captured into
    layers: tuple[str, ...] = ()  # ids of store layers in its lower stack (it references them)


@dataclass(frozen=True)
class InstanceStats:
    cpu_seconds: float
    memory_bytes: int  # charged to the instance: RSS + page cache + tmpfs
    memory_rss_bytes: int
    memory_limit_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    pids: int
    pids_max: int | None


class Driver(abc.ABC):
    """Runs instances on this node. Every method is keyed by instance id and is idempotent
    where that makes sense (start of a running instance, stop of a stopped one, destroy of
    an absent one)."""

    name: str
    data_dir: Path  # everything of this node's driver lives under it
    instances_dir: Path  # one directory per instance
    store_dir: Path  # the filesystem that holds the layers and the instances' disks
    layers: LayerStore  # this node's layers (node/layers/): exported and imported as is

    @abc.abstractmethod
    async def start(self, spec: SandboxSpec, *, from_layer: str | None = None) -> InstanceInfo:
        """Boot (creating the disk on first start) and return once the agent answers. With
        `from_layer`, an instance's first boot clones its disk from that layer."""

    @abc.abstractmethod
    async def stop(self, instance_id: str) -> None:
        """Kill every process and release mounts; the disk stays for the next start."""

    @abc.abstractmethod
    async def destroy(self, instance_id: str) -> None:
        """Stop and delete every byte, mount and cgroup the instance had."""

    @abc.abstractmethod
    def state(self, instance_id: str) -> InstanceState: ...

    @abc.abstractmethod
    async def agent(self, instance_id: str) -> AgentClient:
        """The connected agent client of a running instance (InstanceNotRunning otherwise)."""

    @abc.abstractmethod
    async def stats(self, instance_id: str) -> InstanceStats: ...

    def network_namespace(self, instance_id: str) -> str:
        """The /proc path of a running instance's network namespace (node/ports.py enters
        it to reach the instance's ports); InstanceNotRunning otherwise."""
        raise InstanceNotRunning("This driver cannot reach ports inside its instances.")

    async def set_network(self, instance_id: str, policy: NetworkPolicy) -> None:
        """Change the instance's egress policy: kept in its spec for every later boot, and
        applied at once if it runs (node/egress.py)."""
        raise SandboxFailed("This driver cannot give its instances a network.")

    @abc.abstractmethod
    async def flush(self, instance_id: str) -> None:
        """Write the instance's filesystem to stable storage."""

    @abc.abstractmethod
    def list_owned(self) -> set[str]:
        """Ids of every instance with any state on this node: files, mounts, cgroups."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Drop agent connections (instances keep running)."""

    @abc.abstractmethod
    def instance_dir(self, instance_id: str) -> Path:
        """The instance's own directory (InstanceNotFound for an invalid id)."""

    @abc.abstractmethod
    def disk_image(self, instance_id: str) -> Path:
        """The instance's disk (it may live in the layer store)."""

    @abc.abstractmethod
    def _lock(self, instance_id: str) -> asyncio.Lock:
        """The lock every lifecycle step of the instance holds (image build steps too)."""

    # --- filesystem layers: checkpoint, rollback, fork and the store (node/layers/) ---

    @abc.abstractmethod
    def origin(self, instance_id: str) -> str | None:
        """The layer the instance's disk was last cloned from or captured into."""

    @abc.abstractmethod
    async def checkpoint(self, instance_id: str, layer_id: str) -> LayerInfo:
        """Capture the instance's disk as layer `layer_id`; processes pause only for the clone."""

    @abc.abstractmethod
    async def rollback(self, instance_id: str, layer_id: str) -> InstanceInfo | None:
        """Make the instance's filesystem exactly the layer's; a running instance boots again
        (its new InstanceInfo), a stopped one stays stopped (None)."""

    @abc.abstractmethod
    async def fork(
        self, parent_id: str, child_specs: list[SandboxSpec], *, layer_id: str | None = None
    ) -> list[InstanceInfo | Exception]:
        """Capture the parent once as `layer_id`, boot each child on a clone of it; each
        child's InstanceInfo or its error, in order."""

    @abc.abstractmethod
    def get_layer(self, layer_id: str) -> LayerInfo: ...

    @abc.abstractmethod
    def list_layers(self) -> list[LayerInfo]: ...

    @abc.abstractmethod
    async def delete_layer(self, layer_id: str) -> None:
        """LayerInUse while an instance or another layer stacks on it."""

    @abc.abstractmethod
    async def sweep_layers(self, keep: set[str]) -> set[str]:
        """Delete every layer neither kept nor under a kept one or an instance; the removed."""

    @abc.abstractmethod
    def layer_usage(self) -> dict[str, Any]:
        """The store's space, each layer with what references it, each instance's disk
        (contract.LayerUsageOut)."""

    # --- exec and files go through the agent; drivers rarely need to override these ---
    async def ping(self, instance_id: str, timeout: float = 2.0) -> dict[str, Any]:
        return await (await self.agent(instance_id)).ping(timeout)

    async def exec(
        self,
        instance_id: str,
        cmd: Command,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> ExecResult:
        client = await self.agent(instance_id)
        return await client.exec(
            cmd, cwd=cwd, env=env, stdin=stdin, timeout=timeout, max_output=max_output
        )

    async def exec_stream(
        self,
        instance_id: str,
        cmd: Command,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        stdin_pipe: bool = False,
        timeout: float | None = None,
    ) -> ExecStream:
        client = await self.agent(instance_id)
        return client.exec_stream(
            cmd, cwd=cwd, env=env, stdin=stdin, stdin_pipe=stdin_pipe, timeout=timeout
        )

    async def read_file(
        self, instance_id: str, path: str, *, offset: int = 0, limit: int | None = None
    ) -> bytes:
        return await (await self.agent(instance_id)).read_file(path, offset=offset, limit=limit)

    async def read_stream(
        self,
        instance_id: str,
        path: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        max_size: int | None = None,
    ) -> FileReader:
        client = await self.agent(instance_id)
        return await client.read_stream(path, offset=offset, limit=limit, max_size=max_size)

    async def write_file(
        self,
        instance_id: str,
        path: str,
        data: bytes | str | AsyncIterable[bytes],
        *,
        mode: int = 0o644,
        make_parents: bool = True,
        atomic: bool = True,
        offset: int | None = None,
    ) -> FileInfo:
        client = await self.agent(instance_id)
        return await client.write_file(
            path, data, mode=mode, make_parents=make_parents, atomic=atomic, offset=offset
        )

    async def edit_file(
        self, instance_id: str, path: str, old_str: str, new_str: str, *, replace_all: bool = False
    ) -> EditResult:
        client = await self.agent(instance_id)
        return await client.edit_file(path, old_str, new_str, replace_all=replace_all)

    async def list_dir(self, instance_id: str, path: str, *, depth: int = 1) -> list[FileInfo]:
        return await (await self.agent(instance_id)).list_dir(path, depth=depth)

    async def stat(self, instance_id: str, path: str) -> FileInfo:
        return await (await self.agent(instance_id)).stat(path)

    async def mkdir(self, instance_id: str, path: str, *, parents: bool = True) -> FileInfo:
        return await (await self.agent(instance_id)).mkdir(path, parents=parents)

    async def remove(self, instance_id: str, path: str, *, recursive: bool = False) -> None:
        await (await self.agent(instance_id)).remove(path, recursive=recursive)
