"""Internal routes nodes call: register and heartbeat (tag internal). Authenticated with the
cluster's node token, never with user credentials."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from forkyard.compute.models import ComputeServer, Instance, Vm
from forkyard.compute.node_client import SECRET_PURPOSE
from forkyard.db.session import DbSession
from forkyard.identity.deps import settings_of
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import constant_time_equal, encrypt
from forkyard.kit.errors import NotFound, Unauthenticated
from forkyard.kit.ids import has_prefix


async def require_node_token(request: Request) -> str:
    settings = settings_of(request)
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not given or not constant_time_equal(given, settings.node_token):
        raise Unauthenticated("Nodes authenticate with the cluster's node token.")
    return "node"


router = APIRouter(
    prefix="/v1/internal/servers", tags=["internal"], dependencies=[Depends(require_node_token)]
)


class Capacity(BaseModel):
    cpus: int = Field(ge=0)
    memory_mb: int = Field(ge=0)
    disk_mb: int = Field(ge=0)
    disk_free_mb: int = Field(ge=0)
    slots: int = Field(ge=0)
    running_instances: int = Field(ge=0)


class RegisterRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=400)
    secret: str = Field(min_length=16, max_length=200)
    driver: str
    driver_version: str = ""
    capacity: Capacity
    instances: dict[str, str] = Field(
        default_factory=dict, description="What the node holds: id -> state."
    )


class RegisterResponse(BaseModel):
    server_id: str
    instances: dict[str, str] = Field(
        description="What should exist on the node: id -> running|stopped."
    )
    layers: list[str] | None = Field(
        default=None, description="Layer ids to keep; the node's sweeper removes the rest."
    )


class HeartbeatRequest(BaseModel):
    capacity: Capacity
    instances: dict[str, str] = Field(default_factory=dict)


class HeartbeatResponse(BaseModel):
    ok: bool


def _apply_capacity(server: ComputeServer, cap: Capacity) -> None:
    server.cpus, server.memory_mb, server.disk_mb = cap.cpus, cap.memory_mb, cap.disk_mb
    server.disk_free_mb, server.slots, server.running_instances = (
        cap.disk_free_mb,
        cap.slots,
        cap.running_instances,
    )
    server.last_heartbeat_at = utcnow()
    server.metrics = cap.model_dump()


async def _desired(session: DbSession, server_id: str) -> dict[str, str]:
    rows = (
        await session.execute(
            select(Instance.id, Instance.status, Vm.state)
            .join(Vm, Vm.instance_id == Instance.id)
            .where(Instance.server_id == server_id, Instance.status != "deleting")
        )
    ).all()
    return {
        inst_id: "running"
        if status == "running" or vm_state in ("running", "booting", "unreachable")
        else "stopped"
        for inst_id, status, vm_state in rows
    }


async def _sync_states(session: DbSession, server_id: str, reported: dict[str, str]) -> None:
    """Instances we believe run but the node does not: their VM died (crash, OOM of the agent)."""
    vms = (
        await session.execute(
            select(Vm, Instance)
            .join(Instance, Instance.id == Vm.instance_id)
            .where(Vm.server_id == server_id, Vm.state.in_(("running", "unreachable")))
            # Rows a job holds (a boot, a delete) are left to the next heartbeat: waiting would
            # stall it, and a row deleted meanwhile would fail the update.
            .with_for_update(of=(Vm, Instance), skip_locked=True)
        )
    ).all()
    for vm, instance in vms:
        state = reported.get(instance.id)
        if state == "running":
            if vm.state == "unreachable":
                vm.state = "running"
                if instance.status == "error" and instance.status_reason == "server_unreachable":
                    instance.status, instance.status_reason = "running", None
        elif state is not None and vm.state == "running":
            vm.state, vm.stopped_at = "stopped", utcnow()
            if instance.status == "running":
                instance.status, instance.status_reason = "error", "vm_exited"


@router.post("/register", response_model=RegisterResponse)
async def register_server(
    body: RegisterRequest, request: Request, session: DbSession
) -> RegisterResponse:
    """A node announces itself (again): its URL, secret, driver and capacity."""
    settings = settings_of(request)
    server = (
        await session.execute(select(ComputeServer).where(ComputeServer.name == body.name))
    ).scalar_one_or_none()
    if server is None:
        server = ComputeServer(
            name=body.name, status="active", url=body.url, driver=body.driver, secret_encrypted=""
        )
        session.add(server)
    server.url = body.url
    server.secret_encrypted = encrypt(settings.secret_key, SECRET_PURPOSE, body.secret)
    server.driver, server.driver_version = body.driver, body.driver_version
    if server.status == "unreachable":
        server.status = "active"
    _apply_capacity(server, body.capacity)
    await session.flush()
    # No state sync here: a restarted node reports everything stopped and is about to restart
    # what should run (the answer below); its heartbeats after that tell the truth.
    from forkyard.compute.state.layers import layer_ids_of_server

    return RegisterResponse(
        server_id=server.id,
        instances=await _desired(session, server.id),
        layers=await layer_ids_of_server(session, server.id),
    )


@router.post("/{id}/heartbeat", response_model=HeartbeatResponse)
async def server_heartbeat(
    id: str, body: HeartbeatRequest, session: DbSession
) -> HeartbeatResponse:
    """A node's periodic report: capacity and the state of every instance it holds."""
    server = await session.get(ComputeServer, id) if has_prefix(id, "srv") else None
    if server is None:
        raise NotFound.of("Server", id)
    if server.status == "unreachable":
        server.status = "active"
    _apply_capacity(server, body.capacity)
    await _sync_states(session, server.id, body.instances)
    return HeartbeatResponse(ok=True)
