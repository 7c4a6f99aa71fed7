"""Staff views of compute servers (tag compute_servers): list, inspect, drain, status, metrics,
storage. Invisible (404) to everyone who is not staff."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import func, select

from forkyard.audit.service import record
from forkyard.compute import schemas
from forkyard.compute.models import ComputeServer, Instance, LayerReplica
from forkyard.compute.node_client import node_clients
from forkyard.compute.servers import server_is_fresh
from forkyard.db.session import DbSession
from forkyard.identity.deps import StaffPrincipal, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.kit.pagination import Page

router = protected_router("compute_servers", prefix="/v1/admin/servers")


def server_out(server: ComputeServer, fresh: bool) -> schemas.ServerOut:
    return schemas.ServerOut(
        id=server.id,
        name=server.name,
        url=server.url,
        status=server.status,
        driver=server.driver,
        driver_version=server.driver_version,
        cpus=server.cpus,
        memory_mb=server.memory_mb,
        disk_mb=server.disk_mb,
        disk_free_mb=server.disk_free_mb,
        slots=server.slots,
        running_instances=server.running_instances,
        last_heartbeat_at=server.last_heartbeat_at,
        created_at=server.created_at,
        stale=not fresh,
    )


async def _server(session: DbSession, id: str) -> ComputeServer:
    server = await session.get(ComputeServer, id) if has_prefix(id, "srv") else None
    if server is None:
        raise NotFound.of("Server", id)
    return server


@router.get("", response_model=Page[schemas.ServerOut])
async def list_servers(
    request: Request, session: DbSession, principal: StaffPrincipal
) -> Page[schemas.ServerOut]:
    """Every compute server with capacity, status and heartbeat freshness."""
    settings = settings_of(request)
    rows = (
        await session.execute(select(ComputeServer).order_by(ComputeServer.created_at.desc()))
    ).scalars()
    return Page(data=[server_out(s, server_is_fresh(s, settings)) for s in rows], next_cursor=None)


@router.get("/{id}", response_model=schemas.ServerOut)
async def get_server(
    id: str, request: Request, session: DbSession, principal: StaffPrincipal
) -> schemas.ServerOut:
    """One compute server."""
    server = await _server(session, id)
    return server_out(server, server_is_fresh(server, settings_of(request)))


@router.post("/{id}/drain", response_model=schemas.ServerOut)
async def drain_server(
    id: str, request: Request, session: DbSession, principal: StaffPrincipal
) -> schemas.ServerOut:
    """Stop placing new instances here; instances already on it keep running."""
    server = await _server(session, id)
    server.status = "draining"
    await record(
        session, "server.drained", principal=principal, target_type="server", target_id=server.id
    )
    return server_out(server, server_is_fresh(server, settings_of(request)))


@router.patch("/{id}/status", response_model=schemas.ServerOut)
async def set_server_status(
    id: str,
    body: schemas.ServerStatusUpdate,
    request: Request,
    session: DbSession,
    principal: StaffPrincipal,
) -> schemas.ServerOut:
    """Set a server active, draining or disabled."""
    server = await _server(session, id)
    server.status = body.status
    await record(
        session,
        "server.status_changed",
        principal=principal,
        target_type="server",
        target_id=server.id,
        data={"status": body.status},
    )
    return server_out(server, server_is_fresh(server, settings_of(request)))


@router.get("/{id}/metrics", response_model=schemas.Metrics)
async def server_metrics(id: str, session: DbSession, principal: StaffPrincipal) -> schemas.Metrics:
    """The server's last reported capacity and its instances by status."""
    server = await _server(session, id)
    counts = dict(
        (
            await session.execute(
                select(Instance.status, func.count())
                .where(Instance.server_id == server.id)
                .group_by(Instance.status)
            )
        ).all()
    )
    return schemas.Metrics(
        server_id=server.id,
        metrics=server.metrics,
        instances={k: int(v) for k, v in counts.items()},
    )


@router.get("/{id}/vm-storage")
async def server_vm_storage(
    id: str, request: Request, session: DbSession, principal: StaffPrincipal
) -> dict[str, Any]:
    """Disk used per instance on this server, its layers (what stacks on each) and free space."""
    server = await _server(session, id)
    node = node_clients.for_server(server, settings_of(request).secret_key)
    report: dict[str, Any] = (await node.storage()).model_dump()
    usage = await node.layer_usage()
    report["server_id"] = server.id
    report["storage_mode"] = usage.mode
    report["store"] = usage.store.model_dump()
    report["layers"] = [x.model_dump() for x in usage.layers]
    # What the control plane records of each layer: the servers holding a replica of it, and
    # how this one got it (captured here or copied from another server).
    layer_ids = [x["layer_id"] for x in report["layers"]]
    replicas: dict[str, list[LayerReplica]] = {}
    for replica in (
        await session.execute(select(LayerReplica).where(LayerReplica.layer_id.in_(layer_ids)))
    ).scalars():
        replicas.setdefault(replica.layer_id, []).append(replica)
    for entry in report["layers"]:
        mine = [r for r in replicas.get(entry["layer_id"], []) if r.server_id == server.id]
        entry["servers"] = sorted(r.server_id for r in replicas.get(entry["layer_id"], []))
        entry["replica"] = mine[0].origin if mine else None  # None: unknown, the sweeper's
    return report
