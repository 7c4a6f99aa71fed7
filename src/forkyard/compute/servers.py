"""Compute servers as the control plane sees them: which are fresh, where a new instance goes
(placement), and the client for a server's node. Used by the service, layers and images; it
imports none of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.errors import NoCapacity, NodeUnreachable
from forkyard.compute.models import ComputeServer, Instance, Layer, LayerReplica
from forkyard.compute.node_client import NodeClient, node_clients
from forkyard.config import Settings
from forkyard.kit.clock import utcnow


def server_is_fresh(server: ComputeServer, settings: Settings) -> bool:
    return server.last_heartbeat_at is not None and (
        utcnow() - server.last_heartbeat_at <= timedelta(seconds=settings.server_stale_after_s)
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


async def node_for(session: AsyncSession, settings: Settings, server_id: str | None) -> NodeClient:
    server = await session.get(ComputeServer, server_id) if server_id else None
    if server is None:
        raise NodeUnreachable()
    return node_clients.for_server(server, settings.secret_key)
