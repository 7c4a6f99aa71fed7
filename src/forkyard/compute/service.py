"""The rules of compute: placement, quotas, instance state transitions, and the jobs that carry
them out on nodes."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.audit.service import record
from forkyard.compute import schemas
from forkyard.compute.errors import NodeUnreachable
from forkyard.compute.events import InstanceDeleted

# get_instance is re-exported: ssh, forwards and exec read an instance through the service.
from forkyard.compute.instances import enter, get_profile, get_vm, require_verified
from forkyard.compute.instances import get_instance as get_instance
from forkyard.compute.models import ComputeServer, ExecRecord, Instance, InstanceStack, Vm
from forkyard.compute.node_client import node_clients
from forkyard.compute.provision import blueprint, provision
from forkyard.compute.quotas import check_quota
from forkyard.compute.servers import node_for, place
from forkyard.compute.state.image_resolution import NODE_IMAGES
from forkyard.compute.state.layers import after_boot, ensure_stack, new_stack, release_instance
from forkyard.compute.state.specs import build_spec
from forkyard.compute.states import InstanceStatus, transition
from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.events import Actor, emit
from forkyard.identity.principal import Principal
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError, ValidationFailed

log = logging.getLogger("forkyard.compute")

BOOT_ATTEMPTS_ON_UNREACHABLE = 3
# A create that boots in its own request leaves the queued boot this long, in case it dies.
INLINE_BOOT_SAFETY_NET_S = 60
EXEC_MAX_TIMEOUT_S = 3600  # schemas.ExecRequest.timeout_s's bound
# Nodes heartbeat into nothing while the control plane is down; its silence is not theirs.
# Staleness counts from this process's start at the earliest (ADR 0009).
PROCESS_STARTED_AT = utcnow()


async def create_instance(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    body: schemas.InstanceCreate,
    *,
    booting_inline: bool = False,
) -> Instance:
    """The instance, provisioning, placed on a server, with its boot queued. A caller that
    boots it itself (`booting_inline`) still queues the boot, later, as a safety net: it runs
    only if that caller died before the instance left `provisioning`."""
    require_verified(principal)
    profile = await get_profile(session, principal, body.profile_id) if body.profile_id else None
    plan = blueprint(body, profile, settings)
    assert principal.org_id
    await check_quota(
        session, settings, principal.org_id, plan.vcpus, plan.memory_mb, disk_mb=plan.disk_mb
    )
    # Pinned now: the image's current version when the instance is created.
    stack = await new_stack(session, principal.org_id, plan.image)
    if stack.image_id is None and plan.image not in NODE_IMAGES:
        # Refused here, not left to the node: an unknown name would only fail at boot.
        raise ValidationFailed(
            f"No image named {plan.image!r}.",
            details={"fields": [{"loc": ["body", "image"], "msg": "unknown image"}]},
        )
    server = await place(session, settings, stack.layer_ids)
    inst = await provision(
        session,
        plan,
        org_id=principal.org_id,
        created_by=principal.user_id,
        server_id=server.id,
        stack=stack,
        actor=Actor.of(principal),
        boot_at=utcnow() + timedelta(seconds=INLINE_BOOT_SAFETY_NET_S) if booting_inline else None,
    )
    await record(
        session, "instance.created", principal=principal, target_type="instance", target_id=inst.id
    )
    return inst


async def create_and_boot(
    db: Database, settings: Settings, principal: Principal, body: schemas.InstanceCreate
) -> tuple[Instance, bool]:
    """Create an instance and boot it within the caller's request (`POST /v1/instances?wait=true`):
    the creation commits in a transaction of its own first, so the boot (seconds on the node)
    holds no lock on it and an instance that fails to boot is still there, in `error`. The
    boot runs in a second transaction. Returns the instance and whether it left `provisioning`
    (a node that does not answer leaves it to the queued boot)."""
    async with db.transaction() as session:
        instance = await create_instance(session, settings, principal, body, booting_inline=True)
    try:
        async with db.transaction() as session:
            booted = await boot(session, settings, instance.id, retry_if_unreachable=True)
    except NodeUnreachable:
        return instance, False  # still provisioning: the queued boot tries again
    if booted is None or booted.status == InstanceStatus.PROVISIONING:
        return instance, False
    return booted, True


# --- jobs: each reloads state by id and is safe to run twice ---


@job("instance.boot")
async def boot_instance(ctx: JobContext, payload: dict[str, Any]) -> None:
    await boot(
        ctx.session,
        ctx.settings,
        payload["instance_id"],
        retry_if_unreachable=ctx.attempt < BOOT_ATTEMPTS_ON_UNREACHABLE,
    )


async def boot(
    session: AsyncSession, settings: Settings, instance_id: str, *, retry_if_unreachable: bool
) -> Instance | None:
    """Boot a provisioning instance on its server and mark it running (or error, with the
    reason). Safe to run twice: a second run finds it no longer provisioning. NodeUnreachable
    propagates while `retry_if_unreachable`, for the caller to try again later."""
    # One query for the instance (locked), its VM, its server and its stack: boot() is on the
    # path of `POST /v1/instances?wait=true`, where every round trip shows (bench/compute.py).
    # The stack is only loaded into the session here, for ensure_stack to find it there.
    row = (
        await session.execute(
            select(Instance, Vm, ComputeServer, InstanceStack)
            .join(Vm, Vm.instance_id == Instance.id)
            .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
            .outerjoin(InstanceStack, InstanceStack.instance_id == Instance.id)
            .where(Instance.id == instance_id)
            .with_for_update(of=Instance)
        )
    ).one_or_none()
    if row is None:
        return await session.get(Instance, instance_id)
    instance, vm, server, _stack = row
    if instance.status != InstanceStatus.PROVISIONING:
        return instance
    if server is None:
        raise NodeUnreachable()
    node = node_clients.for_server(server, settings.secret_key)
    try:
        # Held here, so build_spec finds it in the session's identity map (which keeps only
        # objects someone references) instead of loading it again.
        stack = await ensure_stack(session, instance)
        spec = await build_spec(session, instance, settings)
        info = await node.boot(instance.id, spec)
    except NodeUnreachable:
        if retry_if_unreachable:
            raise  # tried again later: a restarting node re-registers meanwhile
        vm.state = "failed"
        await enter(
            session,
            instance,
            InstanceStatus.ERROR,
            action="boot",
            reason="boot failed: the compute server is not answering",
        )
        return instance
    except Exception as exc:
        vm.state = "failed"
        # The reason is shown to the instance's users: the error's public message only (a
        # RemoteError keeps the node's own text, which names host paths, for the log).
        public = exc.message if isinstance(exc, ForkyardError) else "internal error"
        log.warning("boot of %s failed: %s", instance.id, getattr(exc, "node_message", None) or exc)
        await enter(
            session,
            instance,
            InstanceStatus.ERROR,
            action="boot",
            reason=f"boot failed: {public}"[:500],
        )
        return instance
    now = utcnow()
    vm.state, vm.pid, vm.boot_ms, vm.started_at, vm.stopped_at = (
        "running",
        info.pid,
        info.boot_ms,
        now,
        None,
    )
    vm.boots += 1
    instance.last_activity_at = now
    await after_boot(session, stack)
    if instance.setup_commands and not instance.setup_done:
        for command in instance.setup_commands:
            result = await node.exec(
                instance.id, {"command": command, "timeout_s": 600}, timeout=660
            )
            if result["exit_code"] != 0:
                await enter(
                    session,
                    instance,
                    InstanceStatus.ERROR,
                    action="set up",
                    reason=f"setup command failed ({result['exit_code']}): {command}"[:500],
                )
                return instance
        instance.setup_done = True
    await enter(session, instance, InstanceStatus.RUNNING, action="boot")
    return instance


@job("instance.stop")
async def stop_instance(ctx: JobContext, payload: dict[str, Any]) -> None:
    session, settings = ctx.session, ctx.settings
    instance = await session.get(Instance, payload["instance_id"], with_for_update=True)
    if instance is None or instance.status != InstanceStatus.STOPPING:
        return
    vm = await get_vm(session, instance)
    node = await node_for(session, settings, instance.server_id)
    await node.stop(instance.id)
    vm.state, vm.stopped_at, vm.pid = "stopped", utcnow(), None
    await enter(
        session, instance, InstanceStatus.STOPPED, action="stop", reason=payload.get("reason")
    )


@job("instance.destroy")
async def destroy_instance(ctx: JobContext, payload: dict[str, Any]) -> None:
    session, settings = ctx.session, ctx.settings
    instance = await session.get(Instance, payload["instance_id"], with_for_update=True)
    if instance is None or instance.status != InstanceStatus.DELETING:
        return
    if instance.server_id:
        node = await node_for(session, settings, instance.server_id)
        await node.destroy(instance.id)
    await release_instance(session, instance.id)  # its checkpoints and stacked layers
    await emit(session, InstanceDeleted.of(instance))
    await session.delete(instance)


async def mark_stale_servers(session: AsyncSession, settings: Settings) -> int:
    """Servers silent past the threshold become unreachable, and so do their running VMs.
    Right after this control plane started, nobody has had the time to be silent that long."""
    cutoff = utcnow() - timedelta(seconds=settings.server_stale_after_s)
    if cutoff < PROCESS_STARTED_AT:
        return 0
    stale = (
        (
            await session.execute(
                select(ComputeServer).where(
                    ComputeServer.status.in_(("active", "draining")),
                    ComputeServer.last_heartbeat_at < cutoff,
                )
            )
        )
        .scalars()
        .all()
    )
    for server in stale:
        server.status = "unreachable"
        await session.execute(
            update(Vm)
            .where(Vm.server_id == server.id, Vm.state == "running")
            .values(state="unreachable")
        )
        running = await session.execute(
            select(Instance)
            .where(Instance.server_id == server.id, Instance.status == InstanceStatus.RUNNING)
            .with_for_update()
        )
        for instance in running.scalars():
            await enter(
                session, instance, InstanceStatus.ERROR, action="mark", reason="server_unreachable"
            )
    return len(stale)


async def stop_idle_instances(session: AsyncSession) -> int:
    """Stop running instances with no exec, file or network activity for their idle timeout."""
    now = utcnow()
    # An exec still running is activity, however long it takes (bounded by the longest exec
    # timeout, so a record a crashed API left "running" cannot keep an instance up for ever).
    exec_running = (
        select(ExecRecord.id)
        .where(
            ExecRecord.instance_id == Instance.id,
            ExecRecord.status == "running",
            ExecRecord.created_at > now - timedelta(seconds=EXEC_MAX_TIMEOUT_S + 60),
        )
        .exists()
    )
    idle = (
        (
            await session.execute(
                select(Instance)
                .where(
                    Instance.status == "running",
                    Instance.idle_timeout_s.is_not(None),
                    ~exec_running,
                )
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    stopped = 0
    for instance in idle:
        assert instance.idle_timeout_s is not None
        if now - instance.last_activity_at >= timedelta(seconds=instance.idle_timeout_s):
            transition(instance, InstanceStatus.STOPPING, action="stop", reason=None)
            await enqueue(
                session, "instance.stop", {"instance_id": instance.id, "reason": "idle_timeout"}
            )
            stopped += 1
    return stopped


async def close_lost_execs(session: AsyncSession) -> int:
    """Exec records still `running` past the longest exec timeout: the API process that ran
    them died before it could write their end. They become `lost` (outcome unknown)."""
    now = utcnow()
    result = await session.execute(
        update(ExecRecord)
        .where(
            ExecRecord.status == "running",
            ExecRecord.created_at < now - timedelta(seconds=EXEC_MAX_TIMEOUT_S + 60),
        )
        .values(status="lost", finished_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@periodic("compute.sweep", every_s=5)
async def compute_sweep(ctx: JobContext, payload: dict[str, Any]) -> None:
    await mark_stale_servers(ctx.session, ctx.settings)
    await stop_idle_instances(ctx.session)
    await close_lost_execs(ctx.session)
