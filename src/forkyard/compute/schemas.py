"""Request and response shapes for instances, VMs, profiles, exec and files."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from forkyard.node.egress import HOST_RE, MAX_ALLOW, valid_ranges


def _check_env(env: dict[str, str]) -> dict[str, str]:
    if len(env) > 200:
        raise ValueError("at most 200 environment variables")
    for key in env:
        if (
            not key
            or "=" in key
            or "\0" in key
            or len(key) > 200
            or not (key[0].isalpha() or key[0] == "_")
        ):
            raise ValueError(f"invalid environment variable name {key!r}")
    return env


def _check_allow(entry: str) -> str:
    if not (valid_ranges([entry]) or (len(entry) <= 253 and HOST_RE.match(entry))):
        raise ValueError(f"not a host name, IPv4 address or IPv4 CIDR: {entry[:100]!r}")
    return entry


EnvMap = Annotated[dict[str, str], AfterValidator(_check_env)]
# An image is named, never a path: a path would let a caller stack any host directory under
# their instance's root.
IMAGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class Network(BaseModel):
    """What an instance may reach (ADR 0015). "none": loopback only. "allowlist": only `allow`
    (host names, resolved by the node when applied and every 5 minutes; IPv4 addresses; IPv4
    CIDRs). "open": anything public. Never: the control plane, the node, other instances, the
    host, private, link-local, CGNAT and metadata addresses (FORKYARD_EGRESS_BLOCKED_RANGES)."""

    model_config = ConfigDict(extra="forbid")

    egress: Literal["none", "allowlist", "open"] = "none"
    allow: list[Annotated[str, AfterValidator(_check_allow)]] = Field(
        default_factory=list, max_length=MAX_ALLOW
    )


class InstanceCreate(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    profile_id: str | None = None
    image: str | None = Field(
        default=None,
        max_length=200,
        pattern=IMAGE_NAME,
        description="Image name; default `default`.",
    )
    vcpus: float | None = Field(default=None, gt=0, le=64)
    memory_mb: int | None = Field(default=None, ge=64, le=262144)
    disk_mb: int | None = Field(default=None, ge=64, le=1048576)
    env: EnvMap | None = None
    labels: dict[str, str] | None = None
    idle_timeout_s: int | None = Field(default=None, ge=10, le=30 * 86400)
    network: Network | None = Field(
        default=None, description="Default: the profile's, else FORKYARD_DEFAULT_EGRESS."
    )


class InstanceUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    labels: dict[str, str] | None = None
    idle_timeout_s: int | None = Field(default=None, ge=10, le=30 * 86400)
    network: Network | None = Field(
        default=None, description="Applied at once to a running instance."
    )


class VmOut(BaseModel):
    id: str
    instance_id: str
    state: str
    server_id: str | None
    pid: int | None
    boot_ms: float | None
    started_at: datetime | None
    stopped_at: datetime | None
    uptime_s: float | None
    boots: int
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    disk_used_bytes: int | None = None
    disk_total_bytes: int | None = None
    pids: int | None = None


class Capabilities(BaseModel):
    driver: str
    memory_preserved_on_rollback: bool
    checkpoints: bool
    fork: bool


class InstanceOut(BaseModel):
    id: str
    org_id: str
    name: str
    status: str
    status_reason: str | None
    server_id: str | None
    profile_id: str | None
    image: str
    vcpus: float
    memory_mb: int
    disk_mb: int
    env: dict[str, str]
    labels: dict[str, str]
    idle_timeout_s: int | None
    network: Network
    created_at: datetime
    updated_at: datetime | None
    last_activity_at: datetime
    capabilities: Capabilities


class ProfileCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    image: str = Field(default="default", max_length=200, pattern=IMAGE_NAME)
    vcpus: float = Field(default=1, gt=0, le=64)
    memory_mb: int = Field(default=512, ge=64, le=262144)
    disk_mb: int = Field(default=1024, ge=64, le=1048576)
    env: EnvMap = Field(default_factory=dict)
    idle_timeout_s: int | None = Field(default=None, ge=10, le=30 * 86400)
    setup_commands: list[str] = Field(default_factory=list, max_length=50)
    network: Network | None = None  # None: FORKYARD_DEFAULT_EGRESS


class ProfileUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    image: str | None = Field(default=None, max_length=200, pattern=IMAGE_NAME)
    vcpus: float | None = Field(default=None, gt=0, le=64)
    memory_mb: int | None = Field(default=None, ge=64, le=262144)
    disk_mb: int | None = Field(default=None, ge=64, le=1048576)
    env: EnvMap | None = None
    idle_timeout_s: int | None = Field(default=None, ge=10, le=30 * 86400)
    setup_commands: list[str] | None = Field(default=None, max_length=50)
    network: Network | None = None


class ProfileOut(BaseModel):
    id: str
    org_id: str
    name: str
    image: str
    vcpus: float
    memory_mb: int
    disk_mb: int
    env: dict[str, str]
    idle_timeout_s: int | None
    setup_commands: list[str]
    network: Network | None
    created_at: datetime
    updated_at: datetime | None


class ExecRequest(BaseModel):
    command: str | list[str] = Field(
        description="A shell string (run by /bin/sh -c) or an argv list."
    )
    cwd: str | None = Field(default=None, max_length=4096)
    env: EnvMap | None = None
    stdin: str | None = Field(default=None, description="Text fed to the command's standard input.")
    stdin_encoding: Literal["utf-8", "base64"] = "utf-8"
    timeout_s: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("command must not be empty")
        return v


class ExecResultOut(BaseModel):
    exec_id: str
    exit_code: int
    stdout: str
    stderr: str
    encoding: Literal["utf-8", "base64"] = Field(description="How stdout and stderr are encoded.")
    timed_out: bool
    truncated: bool
    duration_ms: float
    signal: int | None


class ExecRecordOut(BaseModel):
    id: str
    command: str
    status: str
    exit_code: int | None
    streamed: bool
    duration_ms: float | None
    created_at: datetime
    finished_at: datetime | None


class FileWrite(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"
    mode: int | None = Field(default=None, ge=0, le=0o7777)
    make_parents: bool = True


class FileEdit(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    old_str: str = Field(min_length=1)
    new_str: str
    replace_all: bool = False


class FileEntry(BaseModel):
    name: str
    path: str
    type: str
    size: int
    mode: int
    modified_at: datetime
    target: str | None = None


class EditResultOut(BaseModel):
    path: str
    replaced: int
    count: int


class ServerOut(BaseModel):
    id: str
    name: str
    url: str
    status: str
    driver: str
    driver_version: str
    cpus: int
    memory_mb: int
    disk_mb: int
    disk_free_mb: int
    slots: int
    running_instances: int
    last_heartbeat_at: datetime | None
    created_at: datetime
    stale: bool


class ServerStatusUpdate(BaseModel):
    status: Literal["active", "draining", "disabled"]


class Metrics(BaseModel):
    server_id: str
    metrics: dict[str, Any]
    instances: dict[str, int]
