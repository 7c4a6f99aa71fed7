"""Compute tables: servers (nodes), instances (durable workspaces), VMs (their running part),
profiles, and an exec history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from forkyard.db.base import Base, IdMixin
from forkyard.kit.clock import utcnow

INSTANCE_STATUSES = ("provisioning", "running", "stopping", "stopped", "error", "deleting")


class ComputeServer(IdMixin, Base):
    __tablename__ = "compute_servers"
    id_prefix = "srv"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(400))
    # Secret the control plane presents when calling the node, encrypted at rest.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # The node's own credential (issued at registration; heartbeats and re-registration present
    # it), as a SHA-256 hash. The cluster's node token only lets a node join.
    credential_hash: Mapped[str | None] = mapped_column(String(64))
    # active | draining | disabled | unreachable
    status: Mapped[str] = mapped_column(String(20), default="active")
    driver: Mapped[str] = mapped_column(String(40))
    driver_version: Mapped[str] = mapped_column(String(40), default="")
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_free_mb: Mapped[int] = mapped_column(Integer, default=0)
    slots: Mapped[int] = mapped_column(Integer, default=0)
    running_instances: Mapped[int] = mapped_column(Integer, default=0)
    last_heartbeat_at: Mapped[datetime | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class Profile(IdMixin, Base):
    __tablename__ = "profiles"
    id_prefix = "prof"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    image: Mapped[str] = mapped_column(String(200), default="default")
    vcpus: Mapped[float] = mapped_column(Float, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=512)
    disk_mb: Mapped[int] = mapped_column(Integer, default=1024)
    env: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    idle_timeout_s: Mapped[int | None] = mapped_column(Integer)
    setup_commands: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    network: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # None: the default egress
    updated_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("org_id", "name"),)


class Instance(IdMixin, Base):
    __tablename__ = "instances"
    id_prefix = "inst"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str | None] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="provisioning")
    status_reason: Mapped[str | None] = mapped_column(Text)
    server_id: Mapped[str | None] = mapped_column(ForeignKey("compute_servers.id"), index=True)
    profile_id: Mapped[str | None] = mapped_column(String(40))
    image: Mapped[str] = mapped_column(String(200), default="default")
    vcpus: Mapped[float] = mapped_column(Float)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    env: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    idle_timeout_s: Mapped[int | None] = mapped_column(Integer)
    setup_commands: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    # egress policy {egress, allow} (ADR 0015); None: a row older than policies (no network)
    network: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    setup_done: Mapped[bool] = mapped_column(Boolean, default=False)
    last_activity_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_instances_org_status", "org_id", "status"),)


class Vm(IdMixin, Base):
    """The running part of an instance. One row per instance, reused across boots."""

    __tablename__ = "vms"
    id_prefix = "vm"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), unique=True
    )
    server_id: Mapped[str | None] = mapped_column(ForeignKey("compute_servers.id"), index=True)
    # pending | booting | running | stopping | stopped | unreachable | failed
    state: Mapped[str] = mapped_column(String(20), default="pending")
    pid: Mapped[int | None] = mapped_column(Integer)
    boot_ms: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    boots: Mapped[int] = mapped_column(Integer, default=0)


class ExecRecord(IdMixin, Base):
    __tablename__ = "exec_records"
    id_prefix = "exec"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(String(40))
    command: Mapped[str] = mapped_column(Text)
    # running | exited | timed_out | failed | killed | lost (its API process died: see the sweep)
    status: Mapped[str] = mapped_column(String(20))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_exec_records_instance_created", "instance_id", "created_at"),)


# --- instance state: layers, checkpoints, snapshots, base images (compute/state/) ---


class Layer(IdMixin, Base):
    """An immutable filesystem layer held by one node's layer store (its id is the node's layer
    id). What references it is counted by queries over the tables below; see state/layers.py."""

    __tablename__ = "layers"
    id_prefix = "lyr"

    server_id: Mapped[str] = mapped_column(ForeignKey("compute_servers.id"), index=True)
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), index=True
    )
    # checkpoint | snapshot | image | fork
    kind: Mapped[str] = mapped_column(String(20))
    # ready | deleting
    status: Mapped[str] = mapped_column(String(20), default="ready")
    # The stack it sits on (store layers, topmost first) and the node image at the bottom.
    lower_ids: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    rootfs: Mapped[str] = mapped_column(String(200), default="default")
    image_id: Mapped[str | None] = mapped_column(String(40))
    disk_mb: Mapped[int] = mapped_column(Integer)
    data_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    source_instance_id: Mapped[str | None] = mapped_column(String(40))
    parent_layer_id: Mapped[str | None] = mapped_column(String(40))
    pause_ms: Mapped[float] = mapped_column(Float, default=0)
    capture_ms: Mapped[float] = mapped_column(Float, default=0)


class LayerReplica(Base):
    """A copy of a layer held by one server's layer store. `Layer.server_id` is where it was
    captured; a layer may since be copied to other servers (state/layers.py `ensure_on`), and
    every replica is deleted with the layer."""

    __tablename__ = "layer_replicas"

    layer_id: Mapped[str] = mapped_column(
        ForeignKey("layers.id", ondelete="CASCADE"), primary_key=True
    )
    server_id: Mapped[str] = mapped_column(
        ForeignKey("compute_servers.id"), primary_key=True, index=True
    )
    # captured | copied
    origin: Mapped[str] = mapped_column(String(20), default="captured")
    copied_bytes: Mapped[int | None] = mapped_column(BigInteger)
    copy_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceStack(Base):
    """What an instance's filesystem rests on: its pinned base image and the store layers under
    its own writable disk; `boot_layer_id` is a layer its disk is cloned from at first boot."""

    __tablename__ = "instance_stacks"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[str | None] = mapped_column(String(40))
    rootfs: Mapped[str] = mapped_column(String(200), default="default")
    layer_ids: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    boot_layer_id: Mapped[str | None] = mapped_column(ForeignKey("layers.id"), index=True)
    # The checkpoint its filesystem last came from or was captured into (the tree's parent).
    head_checkpoint_id: Mapped[str | None] = mapped_column(String(40))


class Checkpoint(IdMixin, Base):
    __tablename__ = "checkpoints"
    id_prefix = "ckpt"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    # manual | before_rollback | before_restore
    reason: Mapped[str] = mapped_column(String(30), default="manual")
    parent_id: Mapped[str | None] = mapped_column(String(40))
    layer_id: Mapped[str] = mapped_column(ForeignKey("layers.id"), index=True)


class Snapshot(IdMixin, Base):
    __tablename__ = "snapshots"
    id_prefix = "snap"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[str | None] = mapped_column(
        ForeignKey("instances.id", ondelete="SET NULL"), index=True
    )
    instance_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    server_id: Mapped[str] = mapped_column(ForeignKey("compute_servers.id"))
    layer_id: Mapped[str] = mapped_column(ForeignKey("layers.id"), index=True)


class BaseImage(IdMixin, Base):
    """One version of an image family. Platform images have no org."""

    __tablename__ = "base_images"
    id_prefix = "img"

    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), index=True
    )
    family: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    # building | ready | failed | aborted
    status: Mapped[str] = mapped_column(String(20))
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    promoted_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    rootfs: Mapped[str] = mapped_column(String(200), default="default")
    layer_id: Mapped[str | None] = mapped_column(ForeignKey("layers.id"), index=True)
    server_id: Mapped[str | None] = mapped_column(ForeignKey("compute_servers.id"))
    recipe: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    logs: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_base_images_org_family_version",
            "org_id",
            "family",
            "version",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
