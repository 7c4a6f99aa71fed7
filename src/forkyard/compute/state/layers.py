"""Layer rows and their reference counts.

A layer (node/layers.py) is referenced by: checkpoints and snapshots captured into it, base
images made of it, instances stacked on it (or to be cloned from it at first boot), and other
layers stacked on it. The counts are queries over those tables, so they cannot drift; when the
last reference goes, `release` marks the layer `deleting` and the `layer.delete` job removes it
from its node, then releases the layers under it. A node's sweeper removes whatever else it
holds: registration answers with the keep-set (`layer_ids_of_server`)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.models import (
    BaseImage,
    Checkpoint,
    Instance,
    InstanceStack,
    Layer,
    Snapshot,
)
from forkyard.compute.node_client import NodeClient, RemoteError
from forkyard.compute.service import node_for, sandbox_spec
from forkyard.compute.state.errors import CaptureFailed
from forkyard.config import Settings
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext
from forkyard.kit.ids import new_id

log = logging.getLogger("forkyard.compute.state")

CAPTURE_TIMEOUT_S = 300


async def ensure_stack(session: AsyncSession, instance: Instance) -> InstanceStack:
    """The instance's stack, pinned at its first boot: the current version of its image family."""
    stack = await session.get(InstanceStack, instance.id)
    if stack is not None:
        return stack
    from forkyard.compute.state.images import resolve_image

    image = await resolve_image(session, instance.org_id, instance.image)
    stack = InstanceStack(instance_id=instance.id, rootfs=instance.image, layer_ids=[])
    if image is not None:
        stack.image_id, stack.rootfs = image.id, image.rootfs
        if image.layer_id:
            layer = await session.get(Layer, image.layer_id)
            if layer is not None:
                stack.layer_ids = [layer.id, *layer.lower_ids]
    session.add(stack)
    await session.flush()
    return stack


async def build_spec(
    session: AsyncSession, instance: Instance, settings: Settings
) -> dict[str, Any]:
    """The node's sandbox spec with the instance's image and layers (and, before its first boot,
    the layer its disk is cloned from)."""
    spec = sandbox_spec(instance, settings)
    stack = await ensure_stack(session, instance)
    spec["image"] = stack.rootfs
    spec.pop("layers", None)
    spec["layer_ids"] = list(stack.layer_ids)
    if stack.boot_layer_id:
        spec["from_layer"] = stack.boot_layer_id
    return spec


async def after_boot(session: AsyncSession, instance: Instance) -> None:
    """The first boot cloned its disk: the instance no longer needs that layer."""
    stack = await session.get(InstanceStack, instance.id)
    if stack is not None and stack.boot_layer_id:
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
        data = await node.json(
            "POST",
            f"/node/instances/{instance.id}/checkpoint",
            {"layer_id": layer_id},
            timeout=CAPTURE_TIMEOUT_S,
        )
    except RemoteError as exc:
        raise CaptureFailed(details={"reason": exc.message[:300]}) from exc
    assert instance.server_id
    return await add_layer(session, data, instance.server_id, instance.org_id, kind, stack)


async def add_layer(
    session: AsyncSession,
    data: dict[str, Any],
    server_id: str,
    org_id: str | None,
    kind: str,
    stack: InstanceStack,
) -> Layer:
    layer = Layer(
        id=data["layer_id"],
        server_id=server_id,
        org_id=org_id,
        kind=kind,
        status="ready",
        lower_ids=list(data.get("lower_layers") or []),
        rootfs=stack.rootfs,
        image_id=stack.image_id,
        disk_mb=data["disk_mb"],
        data_bytes=data.get("data_bytes") or 0,
        source_instance_id=data.get("source_instance"),
        parent_layer_id=data.get("parent"),
        pause_ms=data.get("pause_ms") or 0,
        capture_ms=data.get("capture_ms") or 0,
    )
    session.add(layer)
    await session.flush()
    return layer


async def forget_node_layer(node: NodeClient, layer_id: str) -> None:
    """Best-effort removal of a layer nothing recorded (the sweeper gets it otherwise)."""
    try:
        await node.json("DELETE", f"/node/layers/{layer_id}")
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
    rows = await session.execute(select(Layer.id).where(Layer.server_id == server_id))
    return sorted(rows.scalars())


@job("layer.delete")
async def delete_layer(ctx: JobContext, payload: dict[str, Any]) -> None:
    session = ctx.session
    layer = await session.get(Layer, payload["layer_id"], with_for_update=True)
    if layer is None or layer.status != "deleting":
        return
    if any((await references(session, layer.id)).values()):
        layer.status = "ready"  # something took a reference meanwhile
        return
    node = await node_for(session, ctx.settings, layer.server_id)
    try:
        await node.json("DELETE", f"/node/layers/{layer.id}", timeout=120)
    except RemoteError as exc:
        # layer_in_use: an instance on the node still stacks on it (its destroy is pending);
        # the job is retried with backoff.
        if exc.code != "layer_not_found":
            raise
    lower = list(layer.lower_ids)
    await session.delete(layer)
    await session.flush()
    for layer_id in lower:
        await release(session, layer_id)
