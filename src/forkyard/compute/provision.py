"""The one way an instance is made: create, restore into a new instance, fork (and parallel
runs later) each resolve a `Blueprint` and call `provision`, which writes the instance, its
stack and VM rows and emits instance.created in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute import schemas
from forkyard.compute.events import InstanceCreated
from forkyard.compute.models import Instance, InstanceStack, Profile, Vm
from forkyard.compute.states import InstanceStatus
from forkyard.config import Settings
from forkyard.events import Actor, emit
from forkyard.jobs import enqueue
from forkyard.kit.clock import utcnow

DEFAULT_VCPUS, DEFAULT_MEMORY_MB, DEFAULT_DISK_MB = 1.0, 512, 1024
DEFAULT_IMAGE = "default"


@dataclass(frozen=True)
class Blueprint:
    """A new instance's settings, resolved: what the request asked, else its profile's (or a
    fork's parent's), else the platform's defaults."""

    image: str
    vcpus: float
    memory_mb: int
    disk_mb: int
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    idle_timeout_s: int | None = None
    network: dict[str, Any] = field(default_factory=dict)
    setup_commands: list[str] = field(default_factory=list)
    # False: the setup commands run at first boot. Instances made from a disk (a snapshot, a
    # fork) carry the result of their setup already.
    setup_done: bool = True
    profile_id: str | None = None
    name: str | None = None


def blueprint(
    asked: schemas.InstanceCreate,
    profile: Profile | None,
    settings: Settings,
    *,
    disk_mb: int | None = None,
    image: str | None = None,
    from_disk: bool = False,
) -> Blueprint:
    """The blueprint of a create (or, `from_disk`, a restore: `disk_mb` and `image` are the
    snapshot's, and the disk already went through its setup)."""
    setup = list(profile.setup_commands) if profile and not from_disk else []
    return Blueprint(
        name=asked.name,
        profile_id=profile.id if profile else None,
        image=image or asked.image or (profile.image if profile else DEFAULT_IMAGE),
        vcpus=asked.vcpus or (profile.vcpus if profile else DEFAULT_VCPUS),
        memory_mb=asked.memory_mb or (profile.memory_mb if profile else DEFAULT_MEMORY_MB),
        disk_mb=disk_mb or asked.disk_mb or (profile.disk_mb if profile else DEFAULT_DISK_MB),
        env={**(profile.env if profile else {}), **(asked.env or {})},
        labels=asked.labels or {},
        idle_timeout_s=asked.idle_timeout_s
        if asked.idle_timeout_s is not None
        else (profile.idle_timeout_s if profile else None),
        network=initial_network(asked.network, profile, settings),
        setup_commands=setup,
        setup_done=not setup,
    )


def initial_network(
    asked: schemas.Network | None, profile: Profile | None, settings: Settings
) -> dict[str, Any]:
    """A new instance's egress policy: the request's, else its profile's, else the default."""
    if asked is not None:
        return asked.model_dump()
    if profile is not None and profile.network is not None:
        return dict(profile.network)
    return schemas.Network(egress=settings.default_egress).model_dump()


async def provision(
    session: AsyncSession,
    plan: Blueprint,
    *,
    org_id: str,
    created_by: str | None,
    server_id: str,
    stack: InstanceStack,
    actor: Actor,
    boot: bool = True,
    boot_at: datetime | None = None,
    **source: Any,
) -> Instance:
    """The instance, provisioning on `server_id`, with its stack (not yet added) and a pending
    VM; instance.created is emitted (with `source`: snapshot_id, parent_id) and, with `boot`,
    its boot queued (at `boot_at`, else now). Flushed: it takes a slot in the next placement."""
    instance = Instance(
        org_id=org_id,
        created_by=created_by,
        status=InstanceStatus.PROVISIONING.value,
        server_id=server_id,
        profile_id=plan.profile_id,
        image=plan.image,
        vcpus=plan.vcpus,
        memory_mb=plan.memory_mb,
        disk_mb=plan.disk_mb,
        env=dict(plan.env),
        labels=dict(plan.labels),
        idle_timeout_s=plan.idle_timeout_s,
        setup_commands=list(plan.setup_commands),
        network=plan.network,
        setup_done=plan.setup_done,
        last_activity_at=utcnow(),
    )
    instance.name = plan.name or instance.id
    session.add(instance)
    await session.flush()
    stack.instance_id = instance.id
    session.add(stack)
    session.add(Vm(instance_id=instance.id, server_id=server_id, state="pending", boots=0))
    await emit(session, InstanceCreated.of(instance, actor, **source))
    if boot:
        await enqueue(session, "instance.boot", {"instance_id": instance.id}, run_at=boot_at)
    return instance
