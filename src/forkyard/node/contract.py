"""The contract between the control plane and a compute node: every request and answer of the
node's HTTP API and of its call channel, in one module both sides import (ADR 0012).

The node's routers (node/api/) take and return these models; the control plane's NodeClient
(compute/node_client/) sends and parses them. The node never imports the control plane, so
this module imports nothing of ours but the node's own constants.

Two kinds of shape live here:
- pydantic models for the HTTP routes (lifecycle, layers, image builds, streamed exec and file
  reads), where a validation of a few microseconds is nothing beside the work;
- TypedDicts for the call channel's ops (exec and the small file operations): the exec hot
  path (ADR 0008) stays plain JSON with no validation per call, yet both ends are typed against
  the same names, and `CHANNEL_OPS` is the list the node serves.
Output fields have no defaults; request fields default where the node has a sensible one.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

InstanceState = Literal["running", "stopped", "absent"]


class Contract(BaseModel):
    """Base of every HTTP model of the contract (the route walk in the tests looks for it)."""

    model_config = ConfigDict(extra="forbid")


class ErrorOut(Contract):
    code: str
    message: str


# --- instances ---


class NetworkIn(Contract):
    """An instance's egress policy (node/egress.py): `allow` holds host names (the node
    resolves them), IPv4 addresses and CIDRs; `blocked` the ranges never reachable (the node
    adds its own: loopback, link-local, its instances' links)."""

    egress: Literal["none", "allowlist", "open"] = "none"
    allow: list[str] = Field(default_factory=list, max_length=256)
    blocked: list[str] = Field(default_factory=list, max_length=256)


class SandboxSpecIn(Contract):
    """What to boot. The control plane names the image (`default`, a version's rootfs name) and
    the store layers stacked above it (`layer_ids`, topmost first); the node turns both into
    its own paths. `from_layer`: the first boot clones its disk from that layer (restore, fork).
    `instance_id` is the path's on a boot and required of each fork child."""

    instance_id: str | None = None
    image: str
    vcpus: float
    memory_mb: int
    disk_mb: int
    env: dict[str, str] = Field(default_factory=dict)
    hostname: str | None = None
    pids_max: int = 512
    layer_ids: list[str] = Field(default_factory=list)
    from_layer: str | None = None
    network: NetworkIn | None = None  # None: egress "none"


class NetworkOut(Contract):
    state: InstanceState  # "running": the policy is in force now; otherwise at the next boot
    egress: Literal["none", "allowlist", "open"]


class BootOut(Contract):
    pid: int
    boot_ms: float
    created_disk: bool


class StateOut(Contract):
    state: InstanceState


class FlushOut(Contract):
    flushed: bool


class StatsOut(Contract):
    state: InstanceState
    cpu_seconds: float
    memory_bytes: int
    memory_rss_bytes: int
    memory_limit_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    pids: int
    pids_max: int | None


class PingOut(Contract):
    """The guest agent's own answer (its fields are the agent's: version, uptime...)."""

    model_config = ConfigDict(extra="allow")

    ok: bool


class InstancesOut(Contract):
    instances: dict[str, InstanceState]


class InstanceUsageOut(Contract):
    instance_id: str
    used_bytes: int


class StorageOut(Contract):
    driver: str
    free_bytes: int
    total_bytes: int
    instances: list[InstanceUsageOut]
    used_bytes: int


# --- exec and files over HTTP (streams, and files too large for the call channel) ---


class ExecStreamIn(Contract):
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    stdin_b64: str | None = None
    timeout_s: float | None = None
    max_output: int = 1024 * 1024


class ExecEvent(Contract):
    """One NDJSON line of a streamed exec: `start` {pid}, `stdout`/`stderr` {data_b64}, then
    `exit` {exit_code, signal, timed_out, duration_ms} or `error` {code, message}."""

    type: Literal["start", "stdout", "stderr", "exit", "error"]
    pid: int | None = None
    data_b64: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool | None = None
    duration_ms: float | None = None
    code: str | None = None
    message: str | None = None


class ReadFileIn(Contract):
    path: str
    offset: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, ge=0)
    # A whole-file read of a larger file is refused (file_too_large); no read sends more.
    max_size: int = Field(default=64 * 1024 * 1024, ge=0)


class FileOut(Contract):
    name: str
    path: str
    type: str
    size: int
    mode: int
    mtime: float
    target: str | None


class BytesOut(Contract):
    """Marks a route that answers with raw bytes (a file's content, a layer's stream)."""

    media_type: str


# --- layers: checkpoint, rollback, fork, copies between nodes, sweep ---


class LayerIn(Contract):
    layer_id: str


class LayerFields(Contract):
    """A layer as the node's store records it (node/layers/ LayerInfo), paths as strings."""

    layer_id: str
    path: str
    parent: str | None
    lower: list[str]
    filesystem: str
    disk_mb: int
    data_bytes: int
    source_instance: str | None
    created_at: str
    pause_ms: float
    capture_ms: float


class LayerOut(LayerFields):
    """A layer as the control plane sees it: its lower stack as layer ids, plus its image."""

    lower_layers: list[str]
    image: str | None


class LayersOut(Contract):
    layers: list[LayerOut]


class RollbackOut(Contract):
    state: InstanceState
    pid: int | None  # None: the instance was stopped and stays so
    boot_ms: float | None
    origin: str | None


class ForkIn(Contract):
    layer_id: str
    children: list[SandboxSpecIn] = Field(min_length=1, max_length=100)


class ForkChildOut(Contract):
    instance_id: str
    pid: int | None
    boot_ms: float | None
    error: ErrorOut | None  # this child failed and left nothing; the others stand


class ForkOut(Contract):
    layer: LayerOut
    children: list[ForkChildOut]


class LayerDeletedOut(Contract):
    deleted: str


class ExportTicketOut(Contract):
    ticket: str
    expires_in_s: int


class ImportIn(Contract):
    source_url: str = Field(min_length=8, max_length=400)
    ticket: str = Field(min_length=1, max_length=200)
    # The control plane's name of the layer's base image (e.g. `default`); resolved here.
    image: str | None = None


class ImportOut(LayerOut):
    imported: bool  # False: the layer was already here
    received_bytes: int
    copy_ms: float


class SweepIn(Contract):
    keep: list[str]


class SweepOut(Contract):
    removed: list[str]


class LayerReferencesOut(Contract):
    instances: list[str]
    layers: list[str]


class LayerUsageEntry(LayerFields):
    allocated_bytes: int
    mounted: bool
    referenced_by: LayerReferencesOut


class InstanceDiskOut(Contract):
    instance_id: str
    state: InstanceState
    origin: str | None
    layers: list[str]
    disk_allocated_bytes: int


class StoreUsageOut(Contract):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


class LayerUsageOut(Contract):
    mode: str
    volume: str | None
    store: StoreUsageOut
    layers: list[LayerUsageEntry]
    instances: list[InstanceDiskOut]


# --- image builds (node/images/) ---


class BootstrapIn(Contract):
    suite: str = Field(min_length=2, max_length=64)
    packages: list[str] = Field(default_factory=list, max_length=200)
    disk_mb: int = Field(default=2048, ge=256, le=65536)


class PackagesIn(Contract):
    packages: list[str] = Field(min_length=1, max_length=200)


class BuildEvent(Contract):
    """One NDJSON line of a build step: `log` {line}, `progress` {percent}, `tick` while quiet,
    then `done` (with the step's own results, e.g. `debs`) or `error` {code, message}."""

    model_config = ConfigDict(extra="allow")

    type: Literal["log", "progress", "tick", "done", "error"]


# --- ports (node/port_relay.py, node/api/ports.py) ---


# The sign-in line that opens a connection to the port relay: this, the node's secret, "\n".
PORT_RELAY_GREETING = b"FORKYARD-PORTS/1 "


class PortRelayOut(Contract):
    """`GET /node/ports`: where the node's port relay listens (on the host of the node's URL)."""

    port: int = Field(ge=1, le=65535)


class PortConnectIn(Contract):
    """The target line on a signed-in port relay connection: where to connect. The control
    plane opens these ahead of need and names the target when one is wanted."""

    instance_id: str = Field(min_length=1, max_length=64)
    port: int = Field(ge=1, le=65535)


class PortConnectOut(Contract):
    """The node's answer line to `PortConnectIn`: connected (the connection's bytes follow), or
    why not (and the connection ends)."""

    ok: bool
    code: str | None
    message: str | None


# --- terminals, sessions and watches (node/api/sessions.py) ---


class SessionOpenIn(Contract):
    """The first message on a session's WebSocket: a shell under a terminal (`pty`, for SSH
    with a terminal and web consoles) or a command with piped stdin (`exec`, for `ssh host
    cmd`). Then binary messages from the caller are stdin; text ones are SessionControlIn."""

    kind: Literal["pty", "exec"] = "pty"
    command: str | list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    term: str | None = Field(default=None, max_length=64)
    rows: int = Field(default=24, ge=1, le=10000)
    cols: int = Field(default=80, ge=1, le=10000)


class SessionConnectIn(SessionOpenIn):
    """The first message on a warm session WebSocket (`/node/sessions/connect`): the session of
    `SessionOpenIn`, and the instance it runs in. The control plane opens these ahead of need
    (the SSH gateway's commands), so a session pays no connect, upgrade or authentication."""

    instance_id: str = Field(min_length=1, max_length=64)


class SessionControlIn(Contract):
    """A text message from the caller: a new terminal size, stdin's end, or a signal."""

    type: Literal["resize", "eof", "signal"]
    rows: int | None = Field(default=None, ge=1, le=10000)
    cols: int | None = Field(default=None, ge=1, le=10000)
    signal: int | None = Field(default=None, ge=1, le=64)


class SessionEventOut(Contract):
    """A text message from the node: `start` {pid}, `exit` {exit_code, signal}, or `error`
    {code, message}. Output is binary: one byte of stream (1 stdout, 2 stderr), then bytes."""

    type: Literal["start", "exit", "error"]
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    code: str | None = None
    message: str | None = None


class WatchIn(Contract):
    path: str = Field(default="/root", min_length=1, max_length=4096)
    recursive: bool = False


class WatchEventOut(Contract):
    """One NDJSON line of a watch: `ready` once watching, then created, modified, deleted,
    moved (`from` is the old path) or overflow (events were lost; list again), or `error`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["ready", "created", "modified", "deleted", "moved", "overflow", "error"]
    path: str | None = None
    is_dir: bool | None = None
    from_path: str | None = Field(default=None, alias="from")
    code: str | None = None
    message: str | None = None


# --- language servers (node/api/lsp.py) ---


class LspRunningOut(Contract):
    """A language server running for one workspace root, and how many WebSockets share it."""

    root: str
    clients: int
    started_at: float  # Unix time


class LspServerOut(Contract):
    """A language server the instance's image has (found on its PATH, guest/lsp.py)."""

    language: str
    name: str
    argv: list[str]
    path: str
    running: list[LspRunningOut]


class LspServersOut(Contract):
    servers: list[LspServerOut]


class LspOpenOut(Contract):
    """The first message on a language server's WebSocket: connected, or why not. Then every
    text message either way is one JSON-RPC message."""

    ok: bool
    code: str | None = None
    message: str | None = None


# --- the call channel (node/rpc.py): exec and the small file operations ---


class ExecCall(TypedDict):
    command: str | list[str]
    cwd: NotRequired[str | None]
    env: NotRequired[dict[str, str] | None]
    stdin_b64: NotRequired[str | None]
    timeout_s: NotRequired[float | None]
    max_output: NotRequired[int]


class ExecAnswer(TypedDict):
    exit_code: int
    stdout_b64: str
    stderr_b64: str
    timed_out: bool
    truncated: bool
    duration_ms: float
    signal: int | None


class FileWriteCall(TypedDict):
    path: str
    content_b64: str
    mode: NotRequired[int]
    make_parents: NotRequired[bool]


class FileAnswer(TypedDict):
    name: str
    path: str
    type: str
    size: int
    mode: int
    mtime: float
    target: str | None


class FileEditCall(TypedDict):
    path: str
    old_str: str
    new_str: str
    replace_all: NotRequired[bool]


class EditAnswer(TypedDict):
    count: int
    replaced: int


class FileListCall(TypedDict):
    path: str
    depth: NotRequired[int]


class FileListAnswer(TypedDict):
    entries: list[FileAnswer]


# op -> (params, result): what node/rpc.py serves, and all it serves.
CHANNEL_OPS: dict[str, tuple[type[Any], type[Any]]] = {
    "exec": (ExecCall, ExecAnswer),
    "files.write": (FileWriteCall, FileAnswer),
    "files.edit": (FileEditCall, EditAnswer),
    "files.list": (FileListCall, FileListAnswer),
}
