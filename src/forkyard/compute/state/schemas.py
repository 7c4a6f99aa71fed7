"""Request and response shapes of checkpoints, snapshots, forks and base images."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from forkyard.compute.schemas import EnvMap, InstanceCreate, InstanceOut
from forkyard.node.images import PACKAGE_RE, SUITE_RE

FAMILY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class CheckpointCreate(BaseModel):
    name: str | None = Field(default=None, max_length=200)


class CheckpointOut(BaseModel):
    id: str
    instance_id: str
    name: str | None
    reason: str = Field(description="`manual`, `before_rollback` or `before_restore`.")
    parent_id: str | None = Field(description="The checkpoint this state descends from.")
    data_bytes: int
    disk_mb: int
    pause_ms: float = Field(description="How long the instance's processes were frozen.")
    capture_ms: float
    created_at: datetime


class RollbackRequest(BaseModel):
    checkpoint_id: str


class RollbackOut(BaseModel):
    instance: InstanceOut
    rolled_back_to: str
    checkpoint: CheckpointOut = Field(
        description="The state just before the rollback, kept so the rollback can be undone."
    )
    processes_restarted: bool
    memory_preserved: bool = Field(
        description="Always false on the sandbox driver: files roll back, memory does not."
    )


class SnapshotCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class SnapshotOut(BaseModel):
    id: str
    instance_id: str | None = Field(description="The source instance; null once it is deleted.")
    instance_name: str
    name: str
    description: str | None
    server_id: str = Field(description="Snapshots live on the server that captured them.")
    data_bytes: int
    disk_mb: int
    created_at: datetime


class RestoreRequest(BaseModel):
    new_instance: InstanceCreate | None = Field(
        default=None,
        description="Restore into a new instance (on the snapshot's server) instead of this one.",
    )


class RestoreOut(BaseModel):
    instance: InstanceOut
    new_instance: bool
    checkpoint: CheckpointOut | None = Field(
        description="For an in-place restore, the state just before it (to undo it)."
    )
    processes_restarted: bool
    memory_preserved: bool


class ForkOverrides(BaseModel):
    memory_mb: int | None = Field(default=None, ge=64, le=262144)
    vcpus: float | None = Field(default=None, gt=0, le=64)
    env: EnvMap | None = None
    labels: dict[str, str] | None = None


class ForkRequest(BaseModel):
    count: int = Field(default=1, ge=1, le=50)
    name_prefix: str | None = Field(default=None, min_length=1, max_length=180)
    overrides: ForkOverrides | None = None


class ForkError(BaseModel):
    code: str
    message: str


class ForkChild(BaseModel):
    index: int
    instance: InstanceOut | None
    error: ForkError | None


class ForkOut(BaseModel):
    parent_id: str
    children: list[ForkChild]
    fork_ms: float


class BaseImageOut(BaseModel):
    id: str
    family: str
    version: int
    status: str = Field(description="`building`, `ready`, `failed` or `aborted`.")
    current: bool
    platform: bool = Field(description="A platform image (staff-managed) rather than the org's.")
    org_id: str | None
    description: str | None
    server_id: str | None = Field(description="Where a layer image lives; null for built-ins.")
    recipe: dict[str, Any] = Field(
        description="What the version was built from: `base_image` (an image id), `suite`, "
        "`packages`, `commands`, `disk_mb`; or `from_snapshot`; or `builtin` for a node image."
    )
    progress: int = Field(description="0-100 while building; 100 once ready.")
    error: str | None = Field(description="Why the build failed (`aborted` for an abort).")
    logs: str | None = Field(
        default=None,
        description="Build output: debootstrap's and apt's output, each command and its output "
        "(on the single-image view; the last 200,000 characters).",
    )
    created_at: datetime
    finished_at: datetime | None
    promoted_at: datetime | None


class ImagePrepare(BaseModel):
    """A recipe: exactly one source (`from_snapshot`, `base_image` or `suite`), then, for the
    last two, `packages` installed and `commands` run in that order in a build sandbox whose
    disk becomes the new version's layer. Build sandboxes have no network: packages are
    downloaded by the compute server from the Debian mirror (a .deb cache keeps repeated builds
    fast); commands cannot reach the network."""

    family: str = Field(description="Lower-case letters, digits, `.`, `_`, `-`.")
    description: str | None = Field(default=None, max_length=2000)
    platform: bool = Field(default=False, description="A platform image (staff only).")
    from_snapshot: str | None = Field(
        default=None,
        description="Make the snapshot's filesystem the image (shares its layer; no packages "
        "or commands).",
    )
    base_image: str | None = Field(
        default=None,
        description="Build on this image (an id, or a family name for its current version): "
        "install `packages` on it with apt, then run `commands`.",
    )
    suite: str | None = Field(
        default=None,
        description="Bootstrap a fresh Debian system of this suite or codename (e.g. `bookworm`,"
        " `trixie`; debootstrap minbase) with `packages` and python3 included, then run "
        "`commands`. An unknown suite fails the build with debootstrap's message in the logs.",
    )
    packages: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Debian package names (lower-case letters, digits, `+`, `-`, `.`; at "
        "least two characters), installed with their dependencies (no recommends). A name the "
        "archive does not have fails the build with apt's message in the logs.",
    )
    commands: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Shell commands run as root in order after the packages; the first that "
        "exits non-zero fails the build. They have no network access.",
    )
    disk_mb: int = Field(
        default=2048, ge=256, le=65536, description="Size of the build sandbox's disk."
    )

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        if not FAMILY_RE.match(v):
            raise ValueError("family must be 1-63 lower-case letters, digits, '.', '_' or '-'")
        return v

    @field_validator("suite")
    @classmethod
    def _suite(cls, v: str | None) -> str | None:
        if v is not None and not SUITE_RE.match(v):
            raise ValueError("suite must be a Debian suite or codename such as bookworm")
        return v

    @field_validator("packages")
    @classmethod
    def _packages(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not PACKAGE_RE.match(p)]
        if bad:
            raise ValueError(f"not Debian package names: {', '.join(bad)[:300]}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _one_source(self) -> ImagePrepare:
        sources = [s for s in (self.from_snapshot, self.base_image, self.suite) if s]
        if len(sources) != 1:
            raise ValueError("give exactly one of from_snapshot, base_image or suite")
        if self.from_snapshot and (self.packages or self.commands):
            raise ValueError("a snapshot image takes no packages or commands")
        return self


class ImageRef(BaseModel):
    image_id: str
