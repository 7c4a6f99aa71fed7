"""Internal routes nodes call: register and heartbeat (tag internal). A node joins with the
cluster's node token and gets its own credential back; everything after that (heartbeats,
registering again after a restart) is done with that credential, so one node can never speak
for another, and the shared token alone cannot take over a live node's name."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from forkyard.compute.instances import enter
from forkyard.compute.models import ComputeServer, Instance, Vm
from forkyard.compute.node_client import SECRET_PURPOSE
from forkyard.compute.state.layers import layer_ids_of_server
from forkyard.compute.states import InstanceStatus
from forkyard.db.session import DbSession
from forkyard.identity.deps import ACCESS_ATTR, settings_of
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import constant_time_equal, encrypt, random_token, token_hash
from forkyard.kit.errors import Conflict, NotFound, Unauthenticated
from forkyard.kit.ids import has_prefix


class ServerNameTaken(Conflict):
    code = "server_name_taken"
    message = "A live compute server already has this name; register under another name."


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


async def require_node_token(request: Request) -> str:
    settings = settings_of(request)
    given = _bearer(request)
    if not given or not constant_time_equal(given, settings.node_token):
        raise Unauthenticated("Nodes authenticate with the cluster's node token.")
    return "node"


async def require_node_credential(id: str, request: Request, session: DbSession) -> ComputeServer:
    """The server in the path, when the caller holds that server's own credential."""
    given = _bearer(request)
    if not given:
        raise Unauthenticated("Present this server's own credential (issued at registration).")
    server = await session.get(ComputeServer, id) if has_prefix(id, "srv") else None
    if server is None:
        # A node whose control plane lost it (a new database) registers again on 404.
        raise NotFound.of("Server", id)
    if server.credential_hash is None or not constant_time_equal(
        token_hash(given), server.credential_hash
    ):
        raise Unauthenticated("Present this server's own credential (issued at registration).")
    return server


setattr(require_node_token, ACCESS_ATTR, "node")
setattr(require_node_credential, ACCESS_ATTR, "node")

router = APIRouter(prefix="/v1/internal/servers", tags=["internal"])


class Capacity(BaseModel):
    cpus: int = Field(ge=0)
    memory_mb: int = Field(ge=0)
    disk_mb: int = Field(ge=0)
    disk_free_mb: int = Field(ge=0)
    slots: int = Field(ge=0)
    running_instances: int = Field(ge=0)


class RegisterRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(
        min_length=8, max_length=400, pattern=r"^https?://[^/?#\s]+/?$", description="http or https"
    )
    secret: str = Field(min_length=16, max_length=200)
    credential: str | None = Field(
        default=None,
        max_length=200,
        description="The credential this node was issued before, when it registers again.",
    )
    driver: str
    driver_version: str = ""
    capacity: Capacity
    instances: dict[str, str] = Field(
        default_factory=dict, description="What the node holds: id -> state."
    )


class RegisterResponse(BaseModel):
    server_id: str
    credential: str | None = Field(
        description="A new credential for this node, shown once: present it on heartbeats and "
        "when registering again. Null: keep the one presented."
    )
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
                    await enter(session, instance, InstanceStatus.RUNNING, action="resume")
        elif state is not None and vm.state == "running":
            vm.state, vm.stopped_at = "stopped", utcnow()
            if instance.status == "running":
                await enter(
                    session, instance, InstanceStatus.ERROR, action="mark", reason="vm_exited"
                )


def _is_live(server: ComputeServer, stale_after_s: int) -> bool:
    seen = server.last_heartbeat_at
    return (
        server.status != "unreachable"
        and seen is not None
        and utcnow() - seen < timedelta(seconds=stale_after_s)
    )


@router.post(
    "/register", response_model=RegisterResponse, dependencies=[Depends(require_node_token)]
)
async def register_server(
    body: RegisterRequest, request: Request, session: DbSession
) -> RegisterResponse:
    """A node announces itself (again): its URL, secret, driver and capacity."""
    settings = settings_of(request)
    server = (
        await session.execute(
            select(ComputeServer).where(ComputeServer.name == body.name).with_for_update()
        )
    ).scalar_one_or_none()
    issued: str | None = None
    if server is None:
        server = ComputeServer(
            name=body.name, status="active", url=body.url, driver=body.driver, secret_encrypted=""
        )
        session.add(server)
        issued = random_token()
    elif not (
        body.credential
        and server.credential_hash
        and constant_time_equal(token_hash(body.credential), server.credential_hash)
    ):
        # Not the node that holds this name. A live one keeps it (the join token is shared by
        # every node: it must not let one redirect another's traffic); a dead one's name may
        # be taken over by its replacement.
        if server.credential_hash is not None and _is_live(server, settings.server_stale_after_s):
            raise ServerNameTaken(details={"name": body.name})
        issued = random_token()
    if issued is not None:
        server.credential_hash = token_hash(issued)
    server.url = body.url
    server.secret_encrypted = encrypt(settings.secret_key, SECRET_PURPOSE, body.secret)
    server.driver, server.driver_version = body.driver, body.driver_version
    if server.status == "unreachable":
        server.status = "active"
    _apply_capacity(server, body.capacity)
    await session.flush()
    # No state sync here: a restarted node reports everything stopped and is about to restart
    # what should run (the answer below); its heartbeats after that tell the truth.
    return RegisterResponse(
        server_id=server.id,
        credential=issued,
        instances=await _desired(session, server.id),
        layers=await layer_ids_of_server(session, server.id),
    )


@router.post("/{id}/heartbeat", response_model=HeartbeatResponse)
async def server_heartbeat(
    body: HeartbeatRequest,
    session: DbSession,
    server: Annotated[ComputeServer, Depends(require_node_credential)],
) -> HeartbeatResponse:
    """A node's periodic report: capacity and the state of every instance it holds."""
    if server.status == "unreachable":
        server.status = "active"
    _apply_capacity(server, body.capacity)
    await _sync_states(session, server.id, body.instances)
    return HeartbeatResponse(ok=True)
