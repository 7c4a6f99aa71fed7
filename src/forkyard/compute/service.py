"""The rules of compute: placement, quotas, instance state transitions, and the jobs that carry
them out on nodes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute import schemas
from forkyard.compute.errors import EmailNotVerified, InvalidTransition, NoCapacity, NodeUnreachable
from forkyard.compute.events import (
    InstanceCreated,
    InstanceDeleted,
    InstanceError,
    InstanceRunning,
    InstanceStopped,
)
from forkyard.compute.models import (
    BaseImage,
    ComputeServer,
    ExecRecord,
    Instance,
    Layer,
    LayerReplica,
    Profile,
    Vm,
)
from forkyard.compute.node_client import NodeClient, node_clients
from forkyard.config import Settings
from forkyard.events import Actor, emit
from forkyard.identity.principal import Principal
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError, NotFound, QuotaExceeded, ValidationFailed
from forkyard.kit.ids import has_prefix
from forkyard.node.contract import NetworkIn, SandboxSpecIn

log = logging.getLogger("forkyard.compute")

BOOT_ATTEMPTS_ON_UNREACHABLE = 3
# A create that boots in its own request leaves the queued boot this long, in case it dies.
INLINE_BOOT_SAFETY_NET_S = 60
LIVE_STATUSES = ("provisioning", "running", "stopping", "stopped", "error")
DEFAULT_VCPUS, DEFAULT_MEMORY_MB, DEFAULT_DISK_MB = 1.0, 512, 1024
EXEC_MAX_TIMEOUT_S = 3600  # schemas.ExecRequest.timeout_s's bound
# Nodes heartbeat into nothing while the control plane is down; its silence is not theirs.
# Staleness counts from this process's start at the earliest (ADR 0009).
PROCESS_STARTED_AT = utcnow()


def capabilities(driver: str = "sandbox") -> schemas.Capabilities:
    # The namespace sandbox keeps files, not memory: processes restart after a rollback.
    return schemas.Capabilities(
        driver=driver, memory_preserved_on_rollback=False, checkpoints=True, fork=True
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
    """The caller's org's instance, or 404 (also for other orgs' and wrong-prefix ids)."""
    if not has_prefix(instance_id, "inst"):
        raise NotFound.of("Instance", instance_id)
    stmt = select(Instance).where(Instance.id == instance_id, Instance.org_id == principal.org_id)
    if lock:
        stmt = stmt.with_for_update()
    instance = (await session.execute(stmt)).scalar_one_or_none()
    if instance is None:
        raise NotFound.of("Instance", instance_id)
    return instance


async def get_vm(session: AsyncSession, instance: Instance) -> Vm:
    vm = (await session.execute(select(Vm).where(Vm.instance_id == instance.id))).scalar_one()
    return vm


def server_is_fresh(server: ComputeServer, settings: Settings) -> bool:
    return server.last_heartbeat_at is not None and (
        utcnow() - server.last_heartbeat_at <= timedelta(seconds=settings.server_stale_after_s)
    )


def require_verified(principal: Principal) -> None:
    if not principal.email_verified:
        raise EmailNotVerified()


# An image build whose recipe names no disk size (from a snapshot) counts this much.
BUILD_DISK_MB = 2048
MIB = 1024 * 1024


def _layers_mb(org_id: str) -> Any:
    """The org's checkpoints, snapshots, images and fork layers: the bytes they hold, in MiB."""
    return (
        select(func.coalesce(func.sum(Layer.data_bytes), 0) / MIB)
        .where(Layer.org_id == org_id)
        .scalar_subquery()
    )


def _builds_mb(org_id: str) -> Any:
    """The disks of the org's image builds under way (each runs in a build sandbox)."""
    disk = func.coalesce(BaseImage.recipe["disk_mb"].astext.cast(Integer), BUILD_DISK_MB)
    return (
        select(func.coalesce(func.sum(disk), 0))
        .where(BaseImage.org_id == org_id, BaseImage.status == "building")
        .scalar_subquery()
    )


async def check_disk(
    session: AsyncSession, settings: Settings, org_id: str | None, disk_mb: int = 1
) -> None:
    """Refuse a capture or an image build once the org's disk total (see check_quota) has
    no room for `disk_mb` more (403 `quota_exceeded`, limit `max_disk_mb`)."""
    if org_id is None:  # platform images: staff's, no org's total
        return
    in_use = int(
        (
            await session.execute(
                select(
                    select(func.coalesce(func.sum(Instance.disk_mb), 0))
                    .where(Instance.org_id == org_id, Instance.status.in_(LIVE_STATUSES))
                    .scalar_subquery()
                    + _layers_mb(org_id)
                    + _builds_mb(org_id)
                )
            )
        ).scalar_one()
    )
    if in_use + disk_mb > settings.max_disk_mb_per_org:
        raise QuotaExceeded(
            f"This would exceed the org's max_disk_mb limit of {settings.max_disk_mb_per_org} "
            f"(in use: {in_use}).",
            details={
                "limit": "max_disk_mb",
                "max": settings.max_disk_mb_per_org,
                "in_use": in_use,
                "requested": disk_mb,
            },
        )


async def check_quota(
    session: AsyncSession,
    settings: Settings,
    org_id: str,
    vcpus: float,
    memory_mb: int,
    count: int = 1,
    disk_mb: int = 0,
) -> None:
    """Refuse up front (403 `quota_exceeded`, naming the limit) what would take the org past
    its limits: instances, vCPUs, memory, and disk, which counts its instances' disks, the
    layers of its checkpoints, snapshots and images, and its image builds' sandboxes."""
    if disk_mb > settings.max_disk_mb_per_instance:
        raise QuotaExceeded(
            f"An instance's disk may be at most {settings.max_disk_mb_per_instance} MB.",
            details={
                "limit": "max_disk_mb_per_instance",
                "max": settings.max_disk_mb_per_instance,
                "in_use": 0,
                "requested": disk_mb,
            },
        )
    used = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Instance.vcpus), 0),
                func.coalesce(func.sum(Instance.memory_mb), 0),
                func.coalesce(func.sum(Instance.disk_mb), 0)
                + _layers_mb(org_id)
                + _builds_mb(org_id),
            ).where(Instance.org_id == org_id, Instance.status.in_(LIVE_STATUSES))
        )
    ).one()
    n, cpu, mem, disk = int(used[0]), float(used[1]), int(used[2]), int(used[3])
    for limit, current, extra, cap in (
        ("max_instances", n, count, settings.max_instances_per_org),
        ("max_vcpus", cpu, vcpus * count, settings.max_vcpus_per_org),
        ("max_memory_mb", mem, memory_mb * count, settings.max_memory_mb_per_org),
        ("max_disk_mb", disk, disk_mb * count, settings.max_disk_mb_per_org),
    ):
        if current + extra > cap:
            raise QuotaExceeded(
                f"This would exceed the org's {limit} limit of {cap} (in use: {current:g}).",
                details={"limit": limit, "max": cap, "in_use": current, "requested": extra},
            )


async def place(
    session: AsyncSession, settings: Settings, layer_ids: Sequence[str] = ()
) -> ComputeServer:
    """Pick an active, fresh server with room. With `layer_ids` (the stacks the instance needs),
    one holding all of them, else the most bytes of them (the rest is copied before the boot);
    then the one with the most free slots."""
    # Each active server (locked until the caller commits, so concurrent creates count each
    # other) with the instances placed on it, in one query.
    placed = (
        select(func.count())
        .where(
            Instance.server_id == ComputeServer.id,
            Instance.status.in_(("provisioning", "running")),
        )
        .scalar_subquery()
    )
    rows = await session.execute(
        select(ComputeServer, placed)
        .where(ComputeServer.status == "active")
        .with_for_update(of=ComputeServer)
    )
    candidates = []
    for server, on_it in rows:
        if not server_is_fresh(server, settings):
            continue
        free = server.slots + server.running_instances - on_it
        if free > 0:
            candidates.append((free, server))
    if not candidates:
        raise NoCapacity()
    held = await _held_layer_bytes(session, layer_ids) if layer_ids else {}
    candidates.sort(key=lambda c: (-held.get(c[1].id, 0), -c[0], c[1].id))
    return candidates[0][1]


async def _held_layer_bytes(session: AsyncSession, layer_ids: Sequence[str]) -> dict[str, int]:
    """Per server, the bytes it holds of the layers and everything under them; a server
    holding all of them scores above any that does not."""
    tops = (await session.execute(select(Layer).where(Layer.id.in_(list(layer_ids))))).scalars()
    needed: dict[str, int] = {}
    lower: set[str] = set()
    for layer in tops:
        needed[layer.id] = layer.data_bytes + 1  # +1: an empty layer still counts
        lower.update(layer.lower_ids)
    if lower - set(needed):
        for lid, size in await session.execute(
            select(Layer.id, Layer.data_bytes).where(Layer.id.in_(lower - set(needed)))
        ):
            needed[lid] = size + 1
    total = sum(needed.values())
    held: dict[str, int] = {}
    for server_id, lid in await session.execute(
        select(LayerReplica.server_id, LayerReplica.layer_id).where(
            LayerReplica.layer_id.in_(list(needed))
        )
    ):
        held[server_id] = held.get(server_id, 0) + needed[lid]
    return {k: v + (total if v == total else 0) for k, v in held.items()}


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
    profile = None
    if body.profile_id:
        profile = await get_profile(session, principal, body.profile_id)
    vcpus = body.vcpus or (profile.vcpus if profile else DEFAULT_VCPUS)
    memory_mb = body.memory_mb or (profile.memory_mb if profile else DEFAULT_MEMORY_MB)
    disk_mb = body.disk_mb or (profile.disk_mb if profile else DEFAULT_DISK_MB)
    assert principal.org_id
    await check_quota(session, settings, principal.org_id, vcpus, memory_mb, disk_mb=disk_mb)
    image = body.image or (profile.image if profile else "default")
    from forkyard.compute.state.layers import new_stack

    # Pinned now: the image's current version when the instance is created.
    stack = await new_stack(session, principal.org_id, image)
    if stack.image_id is None and image not in NODE_IMAGES:
        # Refused here, not left to the node: an unknown name would only fail at boot.
        raise ValidationFailed(
            f"No image named {image!r}.",
            details={"fields": [{"loc": ["body", "image"], "msg": "unknown image"}]},
        )
    server = await place(session, settings, stack.layer_ids)
    now = utcnow()
    instance = Instance(
        org_id=principal.org_id,
        created_by=principal.user_id,
        status="provisioning",
        server_id=server.id,
        profile_id=profile.id if profile else None,
        image=image,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        env={**(profile.env if profile else {}), **(body.env or {})},
        labels=body.labels or {},
        idle_timeout_s=body.idle_timeout_s
        if body.idle_timeout_s is not None
        else (profile.idle_timeout_s if profile else None),
        setup_commands=list(profile.setup_commands) if profile else [],
        network=initial_network(body.network, profile, settings),
        setup_done=False,
        last_activity_at=now,
    )
    instance.name = body.name or instance.id
    session.add(instance)
    await session.flush()
    stack.instance_id = instance.id
    session.add(stack)
    session.add(Vm(instance_id=instance.id, server_id=server.id, state="pending", boots=0))
    await emit(session, InstanceCreated.of(instance, Actor.of(principal)))
    await enqueue(
        session,
        "instance.boot",
        {"instance_id": instance.id},
        run_at=utcnow() + timedelta(seconds=INLINE_BOOT_SAFETY_NET_S) if booting_inline else None,
    )
    return instance


async def get_profile(session: AsyncSession, principal: Principal, profile_id: str) -> Profile:
    profile = await session.get(Profile, profile_id) if has_prefix(profile_id, "prof") else None
    if profile is None or profile.org_id != principal.org_id:
        raise NotFound.of("Profile", profile_id)
    return profile


def transition(instance: Instance, allowed_from: tuple[str, ...], to: str, action: str) -> None:
    if instance.status not in allowed_from:
        raise InvalidTransition(
            f"Cannot {action} instance {instance.id} while it is {instance.status}.",
            details={"status": instance.status, "action": action},
        )
    instance.status = to
    instance.status_reason = None
    instance.updated_at = utcnow()


def sandbox_spec(instance: Instance, settings: Settings) -> SandboxSpecIn:
    return SandboxSpecIn(
        instance_id=instance.id,
        image=str(image_path(settings, instance.image)),
        vcpus=instance.vcpus,
        memory_mb=instance.memory_mb,
        disk_mb=instance.disk_mb,
        env=instance.env,
        hostname=instance.id.replace("_", "-"),
        network=network_in(instance.network, settings),
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


def network_of(network: dict[str, Any] | None) -> schemas.Network:
    """An instance's policy (None: a row older than egress policies, which had none)."""
    return schemas.Network.model_validate(network or {})


def network_in(network: dict[str, Any] | None, settings: Settings) -> NetworkIn:
    policy = network_of(network)
    return NetworkIn(
        egress=policy.egress, allow=policy.allow, blocked=settings.egress_blocked_ranges
    )


# Images a node provides itself, by name (every other image is a version in the database).
NODE_IMAGES = frozenset({"default"})


def image_path(settings: Settings, image: str) -> Path:
    """Where the node finds an image. The node resolves `default` to its built default rootfs."""
    return Path("default") if image == "default" else Path(image)


async def node_for(session: AsyncSession, settings: Settings, server_id: str | None) -> NodeClient:
    server = await session.get(ComputeServer, server_id) if server_id else None
    if server is None:
        raise NodeUnreachable()
    return node_clients.for_server(server, settings.secret_key)


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
    from forkyard.compute.state.layers import after_boot, build_spec, ensure_stack

    # One query for the instance (locked), its VM and its server: boot() is on the path of
    # `POST /v1/instances?wait=true`, where every round trip shows (bench/compute.py).
    row = (
        await session.execute(
            select(Instance, Vm, ComputeServer)
            .join(Vm, Vm.instance_id == Instance.id)
            .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
            .where(Instance.id == instance_id)
            .with_for_update(of=Instance)
        )
    ).one_or_none()
    if row is None:
        return await session.get(Instance, instance_id)
    instance, vm, server = row
    if instance.status != "provisioning":
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
        instance.status, instance.status_reason = (
            "error",
            "boot failed: the compute server is not answering",
        )
        await emit(session, InstanceError.of(instance))
        return instance
    except Exception as exc:
        vm.state = "failed"
        # The reason is shown to the instance's users: the error's public message only (a
        # RemoteError keeps the node's own text, which names host paths, for the log).
        public = exc.message if isinstance(exc, ForkyardError) else "internal error"
        instance.status, instance.status_reason = "error", f"boot failed: {public}"[:500]
        log.warning("boot of %s failed: %s", instance.id, getattr(exc, "node_message", None) or exc)
        await emit(session, InstanceError.of(instance))
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
                instance.status, instance.status_reason = (
                    "error",
                    f"setup command failed ({result['exit_code']}): {command}"[:500],
                )
                await emit(session, InstanceError.of(instance))
                return instance
        instance.setup_done = True
    instance.status, instance.status_reason = "running", None
    await emit(session, InstanceRunning.of(instance))
    return instance


@job("instance.stop")
async def stop_instance(ctx: JobContext, payload: dict[str, Any]) -> None:
    session, settings = ctx.session, ctx.settings
    instance = await session.get(Instance, payload["instance_id"], with_for_update=True)
    if instance is None or instance.status != "stopping":
        return
    vm = await get_vm(session, instance)
    node = await node_for(session, settings, instance.server_id)
    await node.stop(instance.id)
    vm.state, vm.stopped_at, vm.pid = "stopped", utcnow(), None
    instance.status = "stopped"
    instance.status_reason = payload.get("reason")
    instance.updated_at = utcnow()
    await emit(session, InstanceStopped.of(instance))


@job("instance.destroy")
async def destroy_instance(ctx: JobContext, payload: dict[str, Any]) -> None:
    session, settings = ctx.session, ctx.settings
    instance = await session.get(Instance, payload["instance_id"], with_for_update=True)
    if instance is None or instance.status != "deleting":
        return
    if instance.server_id:
        node = await node_for(session, settings, instance.server_id)
        await node.destroy(instance.id)
    from forkyard.compute.state.layers import release_instance

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
        failed = await session.execute(
            update(Instance)
            .where(Instance.server_id == server.id, Instance.status == "running")
            .values(status="error", status_reason="server_unreachable")
            .returning(Instance)
        )
        for instance in failed.scalars():
            await emit(session, InstanceError.of(instance))
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
            instance.status = "stopping"
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
