"""Layers on this node: checkpoint, rollback, fork, the store, and copies between nodes
(node/layers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node.api.deps import CaptureFailed, InvalidSpec, Node
from forkyard.node.drivers.base import Driver, InstanceInfo
from forkyard.node.layers import (
    TICKET_TTL_S,
    LayerInfo,
    LayerInUse,
    check_layer_id,
    export_stream,
    export_ticket,
    pull_layer,
)

router = APIRouter(prefix="/node")

LAYER_STREAM = "application/vnd.forkyard.layer"


@router.post("/instances/{instance_id}/checkpoint")
async def checkpoint(instance_id: str, body: c.LayerIn, node: Node) -> c.LayerOut:
    """Capture the instance's disk as a new layer; it keeps running."""
    try:
        info = await node.driver.checkpoint(instance_id, body.layer_id)
    except OSError as exc:
        raise CaptureFailed(f"capture failed: {exc.strerror or exc}") from exc
    return layer_out(node.driver, info)


@router.post("/instances/{instance_id}/rollback")
async def rollback(instance_id: str, body: c.LayerIn, node: Node) -> c.RollbackOut:
    """Make the instance's filesystem exactly the layer's (a running instance boots again)."""
    driver = node.driver
    info = await driver.rollback(instance_id, body.layer_id)
    return c.RollbackOut(
        state=driver.state(instance_id),
        pid=info.pid if info else None,
        boot_ms=info.boot_ms if info else None,
        origin=driver.origin(instance_id),
    )


@router.post("/instances/{instance_id}/fork")
async def fork(instance_id: str, body: c.ForkIn, node: Node) -> c.ForkOut:
    """Capture the instance once and boot every child on a clone of it."""
    specs = []
    for child in body.children:
        if not child.instance_id:
            raise InvalidSpec("each fork child names its instance_id")
        specs.append(node.resolve_spec(child.instance_id, child))
    try:
        results = await node.driver.fork(instance_id, specs, layer_id=body.layer_id)
    except OSError as exc:
        raise CaptureFailed(f"capture failed: {exc.strerror or exc}") from exc
    children: list[c.ForkChildOut] = []
    for spec, r in zip(specs, results, strict=True):
        if isinstance(r, InstanceInfo):
            children.append(
                c.ForkChildOut(
                    instance_id=spec.instance_id, pid=r.pid, boot_ms=r.boot_ms, error=None
                )
            )
            continue
        if isinstance(r, ForkyardError):
            error = c.ErrorOut(code=r.code, message=r.message)
        else:
            error = c.ErrorOut(code="sandbox_failed", message=str(r)[:500])
        children.append(
            c.ForkChildOut(instance_id=spec.instance_id, pid=None, boot_ms=None, error=error)
        )
    layer = layer_out(node.driver, node.driver.get_layer(body.layer_id))
    return c.ForkOut(layer=layer, children=children)


@router.get("/layers")
async def list_layers(node: Node) -> c.LayersOut:
    """Every layer in this node's store."""
    return c.LayersOut(layers=[layer_out(node.driver, x) for x in node.driver.list_layers()])


@router.get("/layers/usage")
async def layers_usage(node: Node) -> c.LayerUsageOut:
    """The store's space, each layer with what references it, each instance's disk."""
    return c.LayerUsageOut.model_validate(await asyncio.to_thread(node.driver.layer_usage))


@router.post("/layers/sweep")
async def sweep_layers(body: c.SweepIn, node: Node) -> c.SweepOut:
    """Delete every layer the control plane does not keep (nor anything stacks on)."""
    removed = await node.driver.sweep_layers(set(body.keep))
    return c.SweepOut(removed=sorted(removed))


@router.get("/layers/{layer_id}")
async def get_layer(layer_id: str, node: Node) -> c.LayerOut:
    """One layer of this node's store."""
    return layer_out(node.driver, node.driver.get_layer(layer_id))


@router.delete("/layers/{layer_id}")
async def delete_layer(layer_id: str, node: Node) -> c.LayerDeletedOut:
    """Delete a layer nothing on this node stacks on (layer_in_use otherwise)."""
    try:
        await node.driver.delete_layer(layer_id)
    except LayerInUse as exc:
        exc.details = {"instances": exc.instances, "layers": exc.layers}
        raise
    return c.LayerDeletedOut(deleted=layer_id)


@router.post("/layers/{layer_id}/export-ticket")
async def layer_export_ticket(layer_id: str, node: Node) -> c.ExportTicketOut:
    """A single-use credential another node presents to pull this layer."""
    node.driver.get_layer(layer_id)  # 404 here rather than at the pulling node
    return c.ExportTicketOut(ticket=export_ticket(node.secret, layer_id), expires_in_s=TICKET_TTL_S)


@router.get(
    "/layers/{layer_id}/export",
    response_class=StreamingResponse,
    responses={200: {"model": c.BytesOut, "content": {LAYER_STREAM: {}}}},
)
async def export_layer(layer_id: str, node: Node) -> StreamingResponse:
    """The layer as a forkyard-layer/1 stream (node/layers.py)."""
    chunks = export_stream(node.driver.layers, layer_id)
    first = await asyncio.to_thread(next, chunks)  # errors answer as errors, not a cut stream

    async def body() -> AsyncIterator[bytes]:
        # Read the next chunk while this one is sent: disk and network overlap.
        ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            yield first
            while (chunk := await ahead) is not None:
                ahead = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
                yield chunk
        finally:
            with contextlib.suppress(BaseException):
                await asyncio.shield(ahead)  # a generator is not closed mid-step
            chunks.close()  # the file is closed even when the puller goes away

    return StreamingResponse(body(), media_type=LAYER_STREAM)


@router.post("/layers/{layer_id}/import")
async def import_layer(layer_id: str, body: c.ImportIn, node: Node) -> c.ImportOut:
    """Copy the layer from the node at source_url (idempotent: a layer already here is kept)."""
    store = node.driver.layers
    check_layer_id(layer_id)
    lock = node.import_locks.setdefault(layer_id, asyncio.Lock())
    async with lock:
        if store.exists(layer_id):
            out = layer_out(node.driver, node.driver.get_layer(layer_id))
            return c.ImportOut(**out.model_dump(), imported=False, received_bytes=0, copy_ms=0.0)
        image = node.images.get(body.image) if body.image else None
        if image is None and body.image and Path(body.image) in node.images.values():
            image = Path(body.image)  # a node names its image by path: only a known one
        t0 = time.monotonic()
        info, received = await pull_layer(
            store, layer_id, body.source_url, body.ticket, image, node.transfers()
        )
    return c.ImportOut(
        **layer_out(node.driver, info).model_dump(),
        imported=True,
        received_bytes=received,
        copy_ms=round((time.monotonic() - t0) * 1000, 2),
    )


def layer_out(driver: Driver, info: LayerInfo) -> c.LayerOut:
    """A layer as the control plane sees it: its lower stack as layer ids plus the image."""
    lower_ids = []
    for p in info.lower[:-1]:
        lid = driver.layers.layer_of_path(p)
        if lid is not None:
            lower_ids.append(lid)
    return c.LayerOut(
        **info.to_json(),
        lower_layers=lower_ids,
        image=str(info.lower[-1]) if info.lower else None,
    )
