"""Checkpoints and rollback (tag checkpoints): fast captures of an instance's filesystem that
form a tree, and rolling the filesystem back to one of them (the state just before is kept as a
checkpoint, so a rollback can be undone). Memory is not preserved: processes restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.errors import InstanceNotRunning
from forkyard.compute.events import CheckpointCreated, CheckpointDeleted, InstanceRolledBack
from forkyard.compute.instances import get_instance, get_vm, instance_out
from forkyard.compute.models import Checkpoint, Instance, InstanceStack, Layer, Snapshot
from forkyard.compute.node_client import RemoteError
from forkyard.compute.quotas import check_disk
from forkyard.compute.servers import node_for
from forkyard.compute.state import schemas
from forkyard.compute.state.layers import capture, ensure_stack, forget_node_layer, release
from forkyard.config import Settings
from forkyard.db.session import DbSession
from forkyard.events import Actor, emit
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

router = protected_router("checkpoints", prefix="/v1/instances")
Paging = Annotated[PageParams, Depends(page_params)]
CAPTURABLE = ("running", "stopped")
R = TypeVar("R", Checkpoint, Snapshot)


def checkpoint_out(ckpt: Checkpoint, layer: Layer) -> schemas.CheckpointOut:
    return schemas.CheckpointOut(
        id=ckpt.id,
        instance_id=ckpt.instance_id,
        name=ckpt.name,
        reason=ckpt.reason,
        parent_id=ckpt.parent_id,
        data_bytes=layer.data_bytes,
        disk_mb=layer.disk_mb,
        pause_ms=layer.pause_ms,
        capture_ms=layer.capture_ms,
        created_at=ckpt.created_at,
    )


def require_capturable(instance: Instance) -> None:
    if instance.status not in CAPTURABLE:
        raise InstanceNotRunning(
            f"Instance {instance.id} is {instance.status}; it must be running or stopped.",
            details={"status": instance.status},
        )


async def capture_as(
    session: AsyncSession,
    settings: Settings,
    instance: Instance,
    kind: str,
    record: Callable[[Layer], R],
) -> tuple[R, Layer]:
    """Capture a running or stopped instance as a new layer of `kind` and store the row
    `record(layer)` that holds it (a checkpoint, a snapshot). A failed capture stores nothing."""
    require_capturable(instance)
    await check_disk(session, settings, instance.org_id)
    layer = await capture(session, settings, instance, kind)
    row = record(layer)
    session.add(row)
    await session.flush()
    return row, layer


async def take_checkpoint(
    session: AsyncSession,
    settings: Settings,
    instance: Instance,
    name: str | None,
    reason: str = "manual",
) -> tuple[Checkpoint, Layer]:
    """Capture the instance into a new checkpoint, child of the one its state came from."""
    stack = await ensure_stack(session, instance)
    ckpt, layer = await capture_as(
        session,
        settings,
        instance,
        "checkpoint",
        lambda layer: Checkpoint(
            org_id=instance.org_id,
            instance_id=instance.id,
            name=name,
            reason=reason,
            parent_id=stack.head_checkpoint_id,
            layer_id=layer.id,
        ),
    )
    stack.head_checkpoint_id = ckpt.id
    await emit(session, CheckpointCreated.of(ckpt))
    return ckpt, layer


async def roll_to_layer(
    session: AsyncSession,
    settings: Settings,
    instance: Instance,
    target: Layer,
    reason: str,
    label: str,
) -> tuple[Checkpoint, Layer, bool]:
    """Keep the current state as a checkpoint, then make the instance's filesystem exactly the
    target layer's (a running instance reboots). Returns (kept checkpoint, its layer, rebooted)."""
    before, before_layer = await take_checkpoint(session, settings, instance, label, reason)
    node = await node_for(session, settings, instance.server_id)
    try:
        result = await node.rollback(instance.id, target.id)
    except RemoteError:
        # The node put the old disk back; nothing of this request will be recorded.
        await forget_node_layer(node, before_layer.id)
        raise
    stack = await session.get(InstanceStack, instance.id)
    assert stack is not None
    dropped = set(stack.layer_ids) - set(target.lower_ids)
    stack.layer_ids, stack.rootfs, stack.image_id = (
        list(target.lower_ids),
        target.rootfs,
        target.image_id,
    )
    rebooted = result.pid is not None
    now = utcnow()
    if rebooted:
        vm = await get_vm(session, instance)
        vm.pid, vm.boot_ms, vm.started_at, vm.boots = (
            result.pid,
            result.boot_ms,
            now,
            vm.boots + 1,
        )
    instance.last_activity_at = now
    instance.updated_at = now
    await session.flush()
    for layer_id in dropped:
        await release(session, layer_id)
    return before, before_layer, rebooted


async def get_checkpoint(
    session: AsyncSession, principal: Principal, instance_id: str, checkpoint_id: str
) -> tuple[Instance, Checkpoint, Layer]:
    instance = await get_instance(session, principal, instance_id, lock=True)
    if not has_prefix(checkpoint_id, "ckpt"):
        raise NotFound.of("Checkpoint", checkpoint_id)
    row = (
        await session.execute(
            select(Checkpoint, Layer)
            .join(Layer, Layer.id == Checkpoint.layer_id)
            .where(Checkpoint.id == checkpoint_id, Checkpoint.instance_id == instance.id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound.of("Checkpoint", checkpoint_id)
    return instance, row[0], row[1]


@router.post("/{id}/checkpoints", status_code=201, response_model=schemas.CheckpointOut)
async def create_checkpoint(
    id: str,
    body: schemas.CheckpointCreate,
    request: Request,
    session: DbSession,
    principal: Writer,
) -> schemas.CheckpointOut:
    """Capture the instance's filesystem now; its processes pause only for the capture."""
    instance = await get_instance(session, principal, id, lock=True)
    ckpt, layer = await take_checkpoint(session, settings_of(request), instance, body.name)
    return checkpoint_out(ckpt, layer)


@router.get("/{id}/checkpoints", response_model=Page[schemas.CheckpointOut])
async def list_checkpoints(
    id: str, session: DbSession, principal: Reader, page: Paging
) -> Page[schemas.CheckpointOut]:
    """The instance's checkpoints, newest first; `parent_id` links them into a tree."""
    instance = await get_instance(session, principal, id)
    rows, cursor = await paginate(
        session,
        select(Checkpoint).where(Checkpoint.instance_id == instance.id),
        Checkpoint,
        page,
    )
    layers = {
        x.id: x
        for x in (
            await session.execute(select(Layer).where(Layer.id.in_([c.layer_id for c in rows])))
        ).scalars()
    }
    return Page(data=[checkpoint_out(c, layers[c.layer_id]) for c in rows], next_cursor=cursor)


@router.get("/{instance_id}/checkpoints/{checkpoint_id}", response_model=schemas.CheckpointOut)
async def get_checkpoint_route(
    instance_id: str, checkpoint_id: str, session: DbSession, principal: Reader
) -> schemas.CheckpointOut:
    """One checkpoint."""
    _, ckpt, layer = await get_checkpoint(session, principal, instance_id, checkpoint_id)
    return checkpoint_out(ckpt, layer)


@router.delete("/{instance_id}/checkpoints/{checkpoint_id}", status_code=204)
async def delete_checkpoint(
    instance_id: str, checkpoint_id: str, session: DbSession, principal: Writer
) -> Response:
    """Delete a checkpoint; its children hang from its parent, and its space is reclaimed."""
    instance, ckpt, _ = await get_checkpoint(session, principal, instance_id, checkpoint_id)
    await session.execute(
        update(Checkpoint)
        .where(Checkpoint.instance_id == instance.id, Checkpoint.parent_id == ckpt.id)
        .values(parent_id=ckpt.parent_id)
    )
    stack = await session.get(InstanceStack, instance.id)
    if stack is not None and stack.head_checkpoint_id == ckpt.id:
        stack.head_checkpoint_id = ckpt.parent_id
    layer_id = ckpt.layer_id
    await emit(session, CheckpointDeleted.of(ckpt, Actor.of(principal)))
    await session.delete(ckpt)
    await session.flush()
    await release(session, layer_id)
    return Response(status_code=204)


@router.post("/{id}/rollback", response_model=schemas.RollbackOut)
async def rollback(
    id: str,
    body: schemas.RollbackRequest,
    request: Request,
    session: DbSession,
    principal: Writer,
) -> schemas.RollbackOut:
    """Make the filesystem exactly the checkpoint's (processes restart; the state before is kept)."""
    instance, target, target_layer = await get_checkpoint(
        session, principal, id, body.checkpoint_id
    )
    require_capturable(instance)
    before, before_layer, rebooted = await roll_to_layer(
        session,
        settings_of(request),
        instance,
        target_layer,
        "before_rollback",
        f"before rollback to {target.id}",
    )
    stack = await session.get(InstanceStack, instance.id)
    assert stack is not None
    stack.head_checkpoint_id = target.id
    await emit(
        session,
        InstanceRolledBack.of(
            instance,
            Actor.of(principal),
            to_checkpoint_id=target.id,
            to_snapshot_id=None,
            kept_checkpoint_id=before.id,
            processes_restarted=rebooted,
        ),
    )
    return schemas.RollbackOut(
        instance=instance_out(instance),
        rolled_back_to=target.id,
        checkpoint=checkpoint_out(before, before_layer),
        processes_restarted=rebooted,
        memory_preserved=False,
    )
