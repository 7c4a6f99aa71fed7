"""The facts of compute (instances, checkpoints, snapshots, forks, images, execs) and the
subscribers compute runs on other domains' facts (the events kernel: forkyard.events)."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import select

from forkyard.compute.models import BaseImage, Checkpoint, Instance, Snapshot
from forkyard.compute.states import InstanceStatus, transition
from forkyard.events import SYSTEM, Actor, Event, subscriber
from forkyard.identity.events import UserDeleted
from forkyard.jobs import enqueue
from forkyard.jobs.queue import JobContext

# --- instances (a VM is an instance's machine on its server; its facts are the instance's) ---


class InstanceEvent(Event):
    resource_type: ClassVar[str] = "instance"
    status: str
    status_reason: str | None
    server_id: str | None

    @classmethod
    def of(cls, instance: Instance, actor: Actor = SYSTEM, **extra: Any) -> Any:
        return cls(
            org_id=instance.org_id,
            resource_id=instance.id,
            actor=actor,
            status=instance.status,
            status_reason=instance.status_reason,
            server_id=instance.server_id,
            **extra,
        )


class InstanceCreated(InstanceEvent):
    """Placed and provisioning. `source`: {} for a new one, {"snapshot_id"} for a restore,
    {"parent_id"} for a fork child."""

    type = "instance.created"
    image: str
    vcpus: float
    memory_mb: int
    disk_mb: int
    source: dict[str, str]

    @classmethod
    def of(cls, instance: Instance, actor: Actor = SYSTEM, **source: Any) -> InstanceCreated:
        return super().of(
            instance,
            actor,
            image=instance.image,
            vcpus=instance.vcpus,
            memory_mb=instance.memory_mb,
            disk_mb=instance.disk_mb,
            source=source,
        )


class InstanceRunning(InstanceEvent):
    """Booted (or booted again) and answering."""

    type = "instance.running"


class InstanceStopped(InstanceEvent):
    """Stopped by request or for idleness (`status_reason` "idle_timeout")."""

    type = "instance.stopped"


class InstanceError(InstanceEvent):
    """A boot or setup command failed, or its server stopped answering; see `status_reason`."""

    type = "instance.error"


class InstanceDeleted(InstanceEvent):
    """Gone from its server, its disk and layers released."""

    type = "instance.deleted"


class InstanceRolledBack(InstanceEvent):
    """Its filesystem is now a checkpoint's (or a snapshot's); the state before was kept as
    `kept_checkpoint_id`."""

    type = "instance.rolled_back"
    to_checkpoint_id: str | None
    to_snapshot_id: str | None
    kept_checkpoint_id: str
    processes_restarted: bool


class InstanceForked(InstanceEvent):
    """Forked into `children` (each also has its own instance.created)."""

    type = "instance.forked"
    children: list[str]


# --- checkpoints and snapshots ---


class CheckpointEvent(Event):
    resource_type: ClassVar[str] = "checkpoint"
    instance_id: str
    name: str | None

    @classmethod
    def of(cls, ckpt: Checkpoint, actor: Actor = SYSTEM, **extra: Any) -> Any:
        return cls(
            org_id=ckpt.org_id,
            resource_id=ckpt.id,
            actor=actor,
            instance_id=ckpt.instance_id,
            name=ckpt.name,
            **extra,
        )


class CheckpointCreated(CheckpointEvent):
    """`reason`: manual, before_rollback, before_restore."""

    type = "checkpoint.created"
    reason: str
    parent_id: str | None

    @classmethod
    def of(cls, ckpt: Checkpoint, actor: Actor = SYSTEM, **extra: Any) -> CheckpointCreated:
        return super().of(ckpt, actor, reason=ckpt.reason, parent_id=ckpt.parent_id)


class CheckpointDeleted(CheckpointEvent):
    type = "checkpoint.deleted"


class SnapshotEvent(Event):
    resource_type: ClassVar[str] = "snapshot"
    instance_id: str | None
    name: str | None

    @classmethod
    def of(cls, snap: Snapshot, actor: Actor = SYSTEM) -> Any:
        return cls(
            org_id=snap.org_id,
            resource_id=snap.id,
            actor=actor,
            instance_id=snap.instance_id,
            name=snap.name,
        )


class SnapshotCreated(SnapshotEvent):
    type = "snapshot.created"


class SnapshotDeleted(SnapshotEvent):
    type = "snapshot.deleted"


# --- image versions ---


class ImageEvent(Event):
    """An image version (`family` v`image_version`); platform images have no org."""

    resource_type: ClassVar[str] = "image"
    family: str
    image_version: int

    @classmethod
    def of(cls, image: BaseImage, actor: Actor = SYSTEM, **extra: Any) -> Any:
        return cls(
            org_id=image.org_id,
            resource_id=image.id,
            actor=actor,
            family=image.family,
            image_version=image.version,
            **extra,
        )


class ImageBuildStarted(ImageEvent):
    type = "image.build_started"


class ImageReady(ImageEvent):
    type = "image.ready"


class ImageFailed(ImageEvent):
    type = "image.failed"
    error: str | None


class ImageAborted(ImageEvent):
    type = "image.aborted"


class ImagePromoted(ImageEvent):
    """Now its family's current version: new instances get it."""

    type = "image.promoted"


class ImageDeleted(ImageEvent):
    type = "image.deleted"


# --- execs ---


class ExecFinished(Event):
    """A command ended. `status`: exited, timed_out, killed (a streamed exec whose client left)
    or failed (it could not start, or its node stopped answering), with what is known of its
    end. The sizes of its output, never the output itself (nor the command line, which may
    carry secrets): events are read by the whole org and sent to its webhooks."""

    type = "exec.finished"
    resource_type: ClassVar[str] = "exec"
    instance_id: str
    status: str
    exit_code: int | None
    duration_ms: float | None
    signal: int | None = None
    streamed: bool = False
    stdout_bytes: int | None = None
    stderr_bytes: int | None = None
    truncated: bool = False


# --- quotas ---


class QuotaNearlyReached(Event):
    """A create, fork, restore, capture or image build took the org's use of a limit
    (max_instances, max_vcpus, max_memory_mb, max_disk_mb) from under `threshold_pct` of it to
    at or over it; `in_use` counts what is being made. Emitted once per crossing: not again
    while use stays above, again once it has gone back under and crosses anew."""

    type = "quota.nearly_reached"
    resource_type: ClassVar[str] = "org"
    limit: str
    max: int | float
    in_use: int | float
    threshold_pct: int


# --- subscribers ---


@subscriber(UserDeleted)
async def delete_personal_org_instances(ctx: JobContext, event: UserDeleted) -> None:
    """A deleted account's personal org: its instances stop and are queued for deletion."""
    if event.personal_org_id is None:
        return
    instances = (
        await ctx.session.execute(
            select(Instance)
            .where(Instance.org_id == event.personal_org_id, Instance.status != "deleting")
            .with_for_update()
        )
    ).scalars()
    for instance in instances:
        transition(instance, InstanceStatus.DELETING, action="delete", reason="account_deleted")
        await enqueue(ctx.session, "instance.destroy", {"instance_id": instance.id})
