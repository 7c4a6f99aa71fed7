"""Layer rows and their reference counts.

A layer (node/layers/) is referenced by: checkpoints and snapshots captured into it, base
images made of it, instances stacked on it (or to be cloned from it at first boot), and other
layers stacked on it. The counts are queries over those tables, so they cannot drift; when the
last reference goes, `release` marks the layer `deleting` and the `layer.delete` job removes it
from every server holding a replica, then releases the layers under it. A node's sweeper
removes whatever else it holds: registration answers with the keep-set (`layer_ids_of_server`).

Replicas: a layer is captured on one server (`Layer.server_id`); `ensure_on` copies it, with
the whole stack under it (bottom-up, each layer once), to another server before an instance
that needs it boots there. The target node pulls the layer straight from a node holding it
(node/layers/); each copy is a `LayerReplica` row. See docs/adr/0006-layer-replicas.md."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.errors import NodeUnreachable
from forkyard.compute.models import (
    BaseImage,
    Checkpoint,
    ComputeServer,
    Instance,
    InstanceStack,
    Layer,
    LayerReplica,
    Snapshot,
)
from forkyard.compute.node_client import NodeClient, RemoteError, node_clients
from forkyard.compute.servers import node_for, server_is_fresh
from forkyard.compute.state.errors import CaptureFailed
from forkyard.compute.state.image_resolution import resolve_image
from forkyard.config import Settings
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError
from forkyard.kit.ids import new_id
from forkyard.node.contract import ImportIn, LayerOut

log = logging.getLogger("forkyard.compute.state")

CAPTURE_TIMEOUT_S = 300
TRANSFER_TIMEOUT_S = 3600
# A replica on a server that stays unreachable this many delete attempts is left to that
# node's sweeper (registration sends the keep-set, which no longer names it).
DELETE_ATTEMPTS_ON_UNREACHABLE = 3


class LayerTransferFailed(ForkyardError):
    status_code = 502
    code = "layer_transfer_failed"
    message = "A layer the instance needs could not be copied to its compute server."


async def new_stack(session: AsyncSession, org_id: str | None, image: str) -> InstanceStack:
    """A stack for an instance of `image` (an image id or family), not yet added: the current
    version of the family, its rootfs and its layers."""
    resolved = await resolve_image(session, org_id, image)
    stack = InstanceStack(rootfs=image, layer_ids=[])
    if resolved is not None:
        stack.image_id, stack.rootfs = resolved.id, resolved.rootfs
        if resolved.layer_id:
            layer = await session.get(Layer, resolved.layer_id)
            if layer is not None:
                stack.layer_ids = [layer.id, *layer.lower_ids]
    return stack


async def ensure_stack(session: AsyncSession, instance: Instance) -> InstanceStack:
    """The instance's stack: pinned when it was created (create_instance), or else now."""
    stack = await session.get(InstanceStack, instance.id)
    if stack is not None:
        return stack
    stack = await new_stack(session, instance.org_id, instance.image)
    stack.instance_id = instance.id
    session.add(stack)
    await session.flush()
    return stack


async def after_boot(session: AsyncSession, stack: InstanceStack) -> None:
    """The first boot cloned its disk: the instance no longer needs that layer."""
    if stack.boot_layer_id:
        layer_id, stack.boot_layer_id = stack.boot_layer_id, None
        await session.flush()
        await release(session, layer_id)


async def capture(
    session: AsyncSession,
    settings: Settings,
    instance: Instance,
    kind: str,
    node: NodeClient | None = None,
) -> Layer:
    """Capture the instance's disk as a new layer on its node (processes pause only for the
    clone). A failure leaves the instance running and nothing recorded."""
    stack = await ensure_stack(session, instance)
    node = node or await node_for(session, settings, instance.server_id)
    layer_id = new_id("lyr")
    try:
        data = await node.checkpoint(instance.id, layer_id, timeout=CAPTURE_TIMEOUT_S)
    except RemoteError as exc:
        raise CaptureFailed(details={"reason": exc.message[:300]}) from exc
    assert instance.server_id
    return await add_layer(session, data, instance.server_id, instance.org_id, kind, stack)


async def add_layer(
    session: AsyncSession,
    data: LayerOut,
    server_id: str,
    org_id: str | None,
    kind: str,
    stack: InstanceStack,
) -> Layer:
    layer = Layer(
        id=data.layer_id,
        server_id=server_id,
        org_id=org_id,
        kind=kind,
        status="ready",
        lower_ids=list(data.lower_layers),
        rootfs=stack.rootfs,
        image_id=stack.image_id,
        disk_mb=data.disk_mb,
        data_bytes=data.data_bytes,
        source_instance_id=data.source_instance,
        parent_layer_id=data.parent,
        pause_ms=data.pause_ms,
        capture_ms=data.capture_ms,
    )
    session.add(layer)
    await session.flush()
    session.add(LayerReplica(layer_id=layer.id, server_id=server_id, origin="captured"))
    await session.flush()
    return layer


# --- replicas: which servers hold a layer, and copying one to another server ---


async def chain(session: AsyncSession, layer_ids: list[str]) -> list[Layer]:
    """The layers and every layer under them, bottom-up (lower before upper), each once."""
    wanted = list(dict.fromkeys(x for x in layer_ids if x))
    if not wanted:
        return []
    rows = {
        x.id: x
        for x in (await session.execute(select(Layer).where(Layer.id.in_(wanted)))).scalars()
    }
    lower = {lid for x in rows.values() for lid in x.lower_ids} - set(rows)
    if lower:
        for x in (await session.execute(select(Layer).where(Layer.id.in_(lower)))).scalars():
            rows[x.id] = x
    ordered: dict[str, Layer] = {}
    for lid in wanted:
        top = rows.get(lid)
        if top is None:
            continue
        for below in reversed(top.lower_ids):  # lower_ids are topmost first
            if below in rows:
                ordered.setdefault(below, rows[below])
        ordered.setdefault(top.id, top)
    return list(ordered.values())


async def ensure_on(
    session: AsyncSession, settings: Settings, server_id: str, layer_ids: list[str]
) -> list[str]:
    """Copy to `server_id` every layer of the stacks `layer_ids` it does not hold yet,
    bottom-up; returns the ids copied. LayerTransferFailed when no holder could provide one."""
    layers = await chain(session, layer_ids)
    if not layers:
        return []
    held = set(
        (
            await session.execute(
                select(LayerReplica.layer_id).where(
                    LayerReplica.server_id == server_id,
                    LayerReplica.layer_id.in_([x.id for x in layers]),
                )
            )
        ).scalars()
    )
    copied = []
    for layer in layers:
        if layer.id not in held:
            await copy_layer(session, settings, layer, server_id)
            copied.append(layer.id)
    return copied


async def copy_layer(
    session: AsyncSession, settings: Settings, layer: Layer, server_id: str
) -> LayerReplica:
    """Have the target node pull the layer from a server holding it (trying each reachable
    holder in turn) and record the replica. The node's import is atomic and idempotent."""
    target = await session.get(ComputeServer, server_id)
    if target is None:
        raise NodeUnreachable()
    target_node = node_clients.for_server(target, settings.secret_key)
    holders = (
        (
            await session.execute(
                select(ComputeServer)
                .join(LayerReplica, LayerReplica.server_id == ComputeServer.id)
                .where(LayerReplica.layer_id == layer.id, ComputeServer.id != server_id)
                .order_by(ComputeServer.id)
            )
        )
        .scalars()
        .all()
    )
    # Fresh holders first; a stale one is still tried (its heartbeat may only be late).
    holders = sorted(holders, key=lambda h: not server_is_fresh(h, settings))
    failures: dict[str, str] = {}
    for source in holders:
        source_node = node_clients.for_server(source, settings.secret_key)
        try:
            ticket = await source_node.export_ticket(layer.id)
        except (RemoteError, NodeUnreachable) as exc:
            failures[source.id] = f"{exc.code}: {exc.message}"[:300]
            continue
        try:
            result = await target_node.import_layer(
                layer.id,
                ImportIn(source_url=source.url, ticket=ticket.ticket, image=layer.rootfs),
                timeout=TRANSFER_TIMEOUT_S,
            )
        except RemoteError as exc:
            if exc.code == "lower_layer_missing":  # a bug in the order: do not hide it
                raise
            failures[source.id] = f"{exc.code}: {exc.message}"[:300]
            continue
        # NodeUnreachable here is the target's: it propagates, the caller's job retries.
        await session.execute(
            insert(LayerReplica)
            .values(
                layer_id=layer.id,
                server_id=server_id,
                origin="copied",
                copied_bytes=result.received_bytes,
                copy_ms=result.copy_ms,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        log.info(
            "layer %s copied %s -> %s: %s bytes in %s ms",
            layer.id,
            source.id,
            server_id,
            result.received_bytes,
            result.copy_ms,
        )
        replica = await session.get(LayerReplica, (layer.id, server_id))
        assert replica is not None
        return replica
    raise LayerTransferFailed(
        f"Layer {layer.id} could not be copied to server {server_id}: "
        + ("; ".join(f"{k}: {v}" for k, v in failures.items()) or "no server holds it"),
        details={"layer_id": layer.id, "server_id": server_id, "sources": failures},
    )


async def forget_node_layer(node: NodeClient, layer_id: str) -> None:
    """Best-effort removal of a layer nothing recorded (the sweeper gets it otherwise)."""
    try:
        await node.delete_layer(layer_id)
    except Exception as exc:  # the sweeper is the fallback
        log.info("could not delete unrecorded layer %s: %s", layer_id, exc)


async def references(session: AsyncSession, layer_id: str) -> dict[str, list[str]]:
    """Everything that keeps the layer alive, by kind."""

    async def ids(stmt: Any) -> list[str]:
        return sorted(str(x) for x in (await session.execute(stmt)).scalars())

    return {
        "checkpoints": await ids(select(Checkpoint.id).where(Checkpoint.layer_id == layer_id)),
        "snapshots": await ids(select(Snapshot.id).where(Snapshot.layer_id == layer_id)),
        "images": await ids(select(BaseImage.id).where(BaseImage.layer_id == layer_id)),
        "layers": await ids(select(Layer.id).where(Layer.lower_ids.contains([layer_id]))),
        "instances": await ids(
            select(InstanceStack.instance_id).where(
                or_(
                    InstanceStack.layer_ids.contains([layer_id]),
                    InstanceStack.boot_layer_id == layer_id,
                )
            )
        ),
    }


async def release(session: AsyncSession, layer_id: str | None) -> bool:
    """Drop the layer once nothing references it (deleted on its node by a job). True if so."""
    if not layer_id:
        return False
    layer = await session.get(Layer, layer_id, with_for_update=True)
    if layer is None or layer.status != "ready":
        return False
    refs = await references(session, layer_id)
    if any(refs.values()):
        return False
    layer.status = "deleting"
    await enqueue(session, "layer.delete", {"layer_id": layer_id})
    return True


async def release_instance(session: AsyncSession, instance_id: str) -> None:
    """The instance is gone from its node: its checkpoints and stack stop referencing layers."""
    held: list[str] = []
    for ckpt in (
        await session.execute(select(Checkpoint).where(Checkpoint.instance_id == instance_id))
    ).scalars():
        held.append(ckpt.layer_id)
        await session.delete(ckpt)
    stack = await session.get(InstanceStack, instance_id)
    if stack is not None:
        held += [*stack.layer_ids, *([stack.boot_layer_id] if stack.boot_layer_id else [])]
        await session.delete(stack)
    await session.flush()
    for layer_id in dict.fromkeys(held):
        await release(session, layer_id)


async def layer_ids_of_server(session: AsyncSession, server_id: str) -> list[str]:
    """The keep-set a node's sweeper gets: every layer the control plane knows on it."""
    replicas = await session.execute(
        select(LayerReplica.layer_id).where(LayerReplica.server_id == server_id)
    )
    captured = await session.execute(select(Layer.id).where(Layer.server_id == server_id))
    return sorted({*replicas.scalars(), *captured.scalars()})


@job("layer.delete")
async def delete_layer(ctx: JobContext, payload: dict[str, Any]) -> None:
    session = ctx.session
    layer = await session.get(Layer, payload["layer_id"], with_for_update=True)
    if layer is None or layer.status != "deleting":
        return
    if any((await references(session, layer.id)).values()):
        layer.status = "ready"  # something took a reference meanwhile
        return
    replicas = (
        (await session.execute(select(LayerReplica).where(LayerReplica.layer_id == layer.id)))
        .scalars()
        .all()
    )
    for replica in replicas:
        node = await node_for(session, ctx.settings, replica.server_id)
        try:
            await node.delete_layer(layer.id, timeout=120)
        except RemoteError as exc:
            # layer_in_use: an instance on the node still stacks on it (its destroy is
            # pending); the job is retried with backoff.
            if exc.code != "layer_not_found":
                raise
        except NodeUnreachable:
            if ctx.attempt < DELETE_ATTEMPTS_ON_UNREACHABLE:
                raise
            log.warning(
                "layer %s: server %s unreachable; its sweeper removes the replica",
                layer.id,
                replica.server_id,
            )
        await session.delete(replica)
    await session.flush()  # the replicas before the layer (no ORM relationship orders them)
    lower = list(layer.lower_ids)
    await session.delete(layer)
    await session.flush()
    for layer_id in lower:
        await release(session, layer_id)
