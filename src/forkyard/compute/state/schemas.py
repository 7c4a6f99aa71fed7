"""Request and response shapes of checkpoints, snapshots, forks and base images."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from forkyard.compute.schemas import EnvMap, InstanceCreate, InstanceOut

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
    recipe: dict[str, Any]
    progress: int
    error: str | None
    logs: str | None = Field(default=None, description="Build output (on the single-image view).")
    created_at: datetime
    finished_at: datetime | None
    promoted_at: datetime | None


class ImagePrepare(BaseModel):
    family: str = Field(description="Lower-case letters, digits, `.`, `_`, `-`.")
    description: str | None = Field(default=None, max_length=2000)
    platform: bool = Field(default=False, description="A platform image (staff only).")
    from_snapshot: str | None = Field(default=None, description="Build from this snapshot.")
    base_image: str | None = Field(
        default=None, description="Run the commands on this image (an id or a family name)."
    )
    suite: str | None = Field(default=None, description="A Debian suite to bootstrap.")
    packages: list[str] = Field(default_factory=list, max_length=200)
    commands: list[str] = Field(default_factory=list, max_length=100)
    disk_mb: int = Field(default=2048, ge=256, le=65536)

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        if not FAMILY_RE.match(v):
            raise ValueError("family must be 1-63 lower-case letters, digits, '.', '_' or '-'")
        return v

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
