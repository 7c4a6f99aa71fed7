"""One instance as every part of compute sees it: the caller's lookups (instance, VM, profile),
the answer's shape, and the change of status that emits its fact.

It sits below `compute.service` and `compute.state`, which both build on it: it imports neither,
so the state routes (checkpoints, snapshots, forks) no longer call back into the service."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute import schemas
from forkyard.compute.errors import EmailNotVerified
from forkyard.compute.events import InstanceError, InstanceEvent, InstanceRunning, InstanceStopped
from forkyard.compute.models import Instance, Profile, Vm
from forkyard.compute.states import InstanceStatus, transition
from forkyard.config import Settings
from forkyard.db.tenancy import get_owned, owned
from forkyard.events import emit
from forkyard.identity.principal import Principal
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.node.contract import NetworkIn


def capabilities(driver: str = "sandbox") -> schemas.Capabilities:
    # The namespace sandbox keeps files, not memory: processes restart after a rollback.
    return schemas.Capabilities(
        driver=driver, memory_preserved_on_rollback=False, checkpoints=True, fork=True
    )


def network_of(network: dict[str, Any] | None) -> schemas.Network:
    """An instance's policy (None: a row older than egress policies, which had none)."""
    return schemas.Network.model_validate(network or {})


def network_in(network: dict[str, Any] | None, settings: Settings) -> NetworkIn:
    policy = network_of(network)
    return NetworkIn(
        egress=policy.egress, allow=policy.allow, blocked=settings.egress_blocked_ranges
    )


def instance_out(instance: Instance) -> schemas.InstanceOut:
    return schemas.InstanceOut(
        id=instance.id,
        org_id=instance.org_id,
        name=instance.name,
        status=instance.status,
        status_reason=instance.status_reason,
        server_id=instance.server_id,
        profile_id=instance.profile_id,
        image=instance.image,
        vcpus=instance.vcpus,
        memory_mb=instance.memory_mb,
        disk_mb=instance.disk_mb,
        env=instance.env,
        labels=instance.labels,
        idle_timeout_s=instance.idle_timeout_s,
        network=network_of(instance.network),
        created_at=instance.created_at,
        updated_at=instance.updated_at,
        last_activity_at=instance.last_activity_at,
        capabilities=capabilities(),
    )


async def get_instance(
    session: AsyncSession, principal: Principal, instance_id: str, *, lock: bool = False
) -> Instance:
    """The caller's org's instance, or 404 (also for other orgs' and wrong-prefix ids). The org
    filter is in the statement, so `lock` never takes another org's row lock."""
    if not has_prefix(instance_id, "inst"):
        raise NotFound.of("Instance", instance_id)
    stmt = owned(select(Instance).where(Instance.id == instance_id), principal)
    if lock:
        stmt = stmt.with_for_update()
    instance = (await session.execute(stmt)).scalar_one_or_none()
    if instance is None:
        raise NotFound.of("Instance", instance_id)
    return instance


async def get_vm(session: AsyncSession, instance: Instance) -> Vm:
    vm = (await session.execute(select(Vm).where(Vm.instance_id == instance.id))).scalar_one()
    return vm


async def get_profile(session: AsyncSession, principal: Principal, profile_id: str) -> Profile:
    return await get_owned(session, Profile, profile_id, principal, kind="Profile")


def require_verified(principal: Principal) -> None:
    if not principal.email_verified:
        raise EmailNotVerified()


# The fact emitted on entering a status (provisioning and deleting are told by instance.created
# and instance.deleted, emitted where the row is made and removed).
STATUS_EVENTS: dict[InstanceStatus, type[InstanceEvent]] = {
    InstanceStatus.RUNNING: InstanceRunning,
    InstanceStatus.STOPPED: InstanceStopped,
    InstanceStatus.ERROR: InstanceError,
}


async def enter(
    session: AsyncSession,
    instance: Instance,
    to: InstanceStatus,
    *,
    action: str,
    reason: str | None = None,
) -> None:
    """`transition`, then emit the fact of the new status (instance.running, .stopped or
    .error) in the same transaction."""
    transition(instance, to, action=action, reason=reason)
    event = STATUS_EVENTS.get(to)
    if event is not None:
        await emit(session, event.of(instance))
