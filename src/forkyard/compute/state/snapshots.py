"""Snapshots (tag snapshots): durable, named captures of an instance that outlive it. Restore
into the same instance (its filesystem becomes the snapshot's; the state before is kept as a
checkpoint) or into a new instance. A new instance is placed on a server holding the snapshot's
layers when one has room; otherwise they are copied to the server it lands on before it boots
(state/layers.py `ensure_on`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import select

from forkyard.audit.service import record
from forkyard.compute.events import (
    InstanceRolledBack,
    SnapshotCreated,
    SnapshotDeleted,
)
from forkyard.compute.instances import (
    get_instance,
    get_profile,
    instance_out,
    require_verified,
)
from forkyard.compute.models import (
    BaseImage,
    Instance,
    InstanceStack,
    Layer,
    Snapshot,
)
from forkyard.compute.provision import blueprint, provision
from forkyard.compute.quotas import check_quota
from forkyard.compute.servers import place
from forkyard.compute.state import schemas
from forkyard.compute.state.checkpoints import (
    capture_as,
    checkpoint_out,
    require_capturable,
    roll_to_layer,
)
from forkyard.compute.state.errors import SnapshotInUse
from forkyard.compute.state.layers import ensure_on, release
from forkyard.db.session import DbSession
from forkyard.db.tenancy import owned
from forkyard.events import Actor, emit
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page, PageParams, page_params, paginate

router = protected_router("snapshots", prefix="/v1/instances")
Paging = Annotated[PageParams, Depends(page_params)]


def snapshot_out(snap: Snapshot, layer: Layer) -> schemas.SnapshotOut:
    return schemas.SnapshotOut(
        id=snap.id,
        instance_id=snap.instance_id,
        instance_name=snap.instance_name,
        name=snap.name,
        description=snap.description,
        server_id=snap.server_id,
        data_bytes=layer.data_bytes,
        disk_mb=layer.disk_mb,
        created_at=snap.created_at,
    )


async def _snapshot(
    session: DbSession, principal: Principal, instance_id: str, snapshot_id: str
) -> tuple[Snapshot, Layer]:
    """A snapshot of the org's; the instance in the path may be its source or, once the source
    is deleted, any instance id of the org's."""
    if not has_prefix(snapshot_id, "snap") or not has_prefix(instance_id, "inst"):
        raise NotFound.of("Snapshot", snapshot_id)
    row = (
        await session.execute(
            owned(
                select(Snapshot, Layer)
                .join(Layer, Layer.id == Snapshot.layer_id)
                .where(Snapshot.id == snapshot_id),
                principal,
            )
        )
    ).one_or_none()
    if row is None or row[0].instance_id not in (instance_id, None):
        raise NotFound.of("Snapshot", snapshot_id)
    if row[0].instance_id is None:
        await get_instance(session, principal, instance_id)  # the path must still be the org's
    return row[0], row[1]


async def dependents(session: DbSession, layer_id: str) -> dict[str, list[str]]:
    """Images and instances built on the layer (directly or through layers stacked on it)."""
    above = list(
        (
            await session.execute(select(Layer.id).where(Layer.lower_ids.contains([layer_id])))
        ).scalars()
    )
    layers = [layer_id, *above]
    images = (
        await session.execute(select(BaseImage.id).where(BaseImage.layer_id.in_(layers)))
    ).scalars()
    instances = (
        await session.execute(
            select(InstanceStack.instance_id)
            .join(Instance, Instance.id == InstanceStack.instance_id)
            .where(
                Instance.status != "deleting",
                (InstanceStack.layer_ids.contains([layer_id]))
                | (InstanceStack.boot_layer_id.in_(layers)),
            )
        )
    ).scalars()
    return {"images": sorted(images), "instances": sorted(instances)}


@router.post("/{id}/snapshots", status_code=201, response_model=schemas.SnapshotOut)
async def create_snapshot(
    id: str, body: schemas.SnapshotCreate, request: Request, session: DbSession, principal: Writer
) -> schemas.SnapshotOut:
    """Capture the instance as a named snapshot that outlives it."""
    instance = await get_instance(session, principal, id, lock=True)
    snap, layer = await capture_as(
        session,
        settings_of(request),
        instance,
        "snapshot",
        lambda layer: Snapshot(
            org_id=instance.org_id,
            instance_id=instance.id,
            instance_name=instance.name,
            name=body.name,
            description=body.description,
            server_id=instance.server_id,  # set: capturable instances are placed
            layer_id=layer.id,
        ),
    )
    await emit(session, SnapshotCreated.of(snap, Actor.of(principal)))
    return snapshot_out(snap, layer)


@router.get("/{id}/snapshots", response_model=Page[schemas.SnapshotOut])
async def list_snapshots(
    id: str, session: DbSession, principal: Reader, page: Paging
) -> Page[schemas.SnapshotOut]:
    """The instance's snapshots, newest first."""
    instance = await get_instance(session, principal, id)
    rows, cursor = await paginate(
        session, select(Snapshot).where(Snapshot.instance_id == instance.id), Snapshot, page
    )
    layers = {
        x.id: x
        for x in (
            await session.execute(select(Layer).where(Layer.id.in_([s.layer_id for s in rows])))
        ).scalars()
    }
    return Page(data=[snapshot_out(s, layers[s.layer_id]) for s in rows], next_cursor=cursor)


@router.get("/{id}/snapshots/{snapshot_id}", response_model=schemas.SnapshotOut)
async def get_snapshot(
    id: str, snapshot_id: str, session: DbSession, principal: Reader
) -> schemas.SnapshotOut:
    """One snapshot."""
    return snapshot_out(*await _snapshot(session, principal, id, snapshot_id))


@router.delete("/{id}/snapshots/{snapshot_id}", status_code=204)
async def delete_snapshot(
    id: str, snapshot_id: str, session: DbSession, principal: Writer
) -> Response:
    """Delete a snapshot; refused while an image or instance depends on it."""
    snap, layer = await _snapshot(session, principal, id, snapshot_id)
    deps = await dependents(session, layer.id)
    if any(deps.values()):
        names = ", ".join(deps["images"] + deps["instances"])
        raise SnapshotInUse(f"Snapshot {snap.id} is used by {names}.", details=deps)
    await emit(session, SnapshotDeleted.of(snap, Actor.of(principal)))
    await session.delete(snap)
    await session.flush()
    await release(session, layer.id)
    return Response(status_code=204)


@router.post("/{id}/snapshots/{snapshot_id}/restore", response_model=schemas.RestoreOut)
async def restore_snapshot(
    id: str,
    snapshot_id: str,
    body: schemas.RestoreRequest,
    request: Request,
    response: Response,
    session: DbSession,
    principal: Writer,
) -> schemas.RestoreOut:
    """Restore into this instance, or with `new_instance` into a new one."""
    settings = settings_of(request)
    snap, layer = await _snapshot(session, principal, id, snapshot_id)
    if body.new_instance is None:
        instance = await get_instance(session, principal, id, lock=True)
        require_capturable(instance)
        assert instance.server_id
        await ensure_on(session, settings, instance.server_id, [layer.id])
        before, before_layer, rebooted = await roll_to_layer(
            session, settings, instance, layer, "before_restore", f"before restore of {snap.id}"
        )
        stack = await session.get(InstanceStack, instance.id)
        assert stack is not None
        stack.head_checkpoint_id = None
        await emit(
            session,
            InstanceRolledBack.of(
                instance,
                Actor.of(principal),
                to_checkpoint_id=None,
                to_snapshot_id=snap.id,
                kept_checkpoint_id=before.id,
                processes_restarted=rebooted,
            ),
        )
        return schemas.RestoreOut(
            instance=instance_out(instance),
            new_instance=False,
            checkpoint=checkpoint_out(before, before_layer),
            processes_restarted=rebooted,
            memory_preserved=False,
        )
    new = body.new_instance
    require_verified(principal)
    profile = await get_profile(session, principal, new.profile_id) if new.profile_id else None
    # The disk is a clone of the snapshot's, set up already; the rest as a create would have it.
    plan = blueprint(
        new,
        profile,
        settings,
        disk_mb=layer.disk_mb,
        image=layer.image_id or layer.rootfs,
        from_disk=True,
    )
    assert principal.org_id
    await check_quota(
        session, settings, principal.org_id, plan.vcpus, plan.memory_mb, disk_mb=plan.disk_mb
    )
    server = await place(session, settings, [layer.id])
    instance = await provision(
        session,
        plan,
        org_id=principal.org_id,
        created_by=principal.user_id,
        server_id=server.id,
        stack=InstanceStack(
            image_id=layer.image_id,
            rootfs=layer.rootfs,
            layer_ids=list(layer.lower_ids),
            boot_layer_id=layer.id,
        ),
        actor=Actor.of(principal),
        snapshot_id=snap.id,
    )
    await record(
        session,
        "instance.created",
        principal=principal,
        target_type="instance",
        target_id=instance.id,
        data={"from_snapshot": snap.id},
    )
    response.status_code = 202
    return schemas.RestoreOut(
        instance=instance_out(instance),
        new_instance=True,
        checkpoint=None,
        processes_restarted=False,
        memory_preserved=False,
    )
