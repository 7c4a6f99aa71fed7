"""Small factories for compute's rows, for service-level tests that need no node, no HTTP and
no root: an org, a compute server, an instance, a layer, and the principal acting for an org."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute.models import ComputeServer, Instance, Layer, LayerReplica, Vm
from forkyard.compute.node_client import SECRET_PURPOSE
from forkyard.config import Settings
from forkyard.identity.principal import ROLE_SCOPES, Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import encrypt
from forkyard.kit.ids import new_id

# Nothing listens on the discard port here: a call to this node is refused at once.
NOWHERE = "http://127.0.0.1:9"


async def make_org(session: AsyncSession, name: str = "acme") -> str:
    # By table, not by model: which package holds the Org model is not compute's concern.
    org_id = new_id("org")
    await session.execute(
        text("INSERT INTO orgs (id, name, is_personal, created_at) VALUES (:id, :n, false, :t)"),
        {"id": org_id, "n": name, "t": utcnow()},
    )
    return org_id


def principal_for(org_id: str, *, role: str = "owner") -> Principal:
    return Principal(
        kind="api_key",
        user_id=new_id("usr"),
        org_id=org_id,
        role=role,
        scopes=ROLE_SCOPES[role],
        email_verified=True,
    )


async def make_server(
    session: AsyncSession,
    settings: Settings,
    *,
    name: str | None = None,
    slots: int = 4,
    status: str = "active",
    silent_for_s: float = 0,
    url: str = NOWHERE,
) -> ComputeServer:
    server = ComputeServer(
        name=name or new_id("node"),
        url=url,
        secret_encrypted=encrypt(settings.secret_key, SECRET_PURPOSE, "node-secret"),
        status=status,
        driver="sandbox",
        slots=slots,
        last_heartbeat_at=utcnow() - timedelta(seconds=silent_for_s),
    )
    session.add(server)
    await session.flush()
    return server


async def make_instance(
    session: AsyncSession,
    org_id: str,
    server: ComputeServer | None,
    *,
    status: str = "running",
    vcpus: float = 1,
    memory_mb: int = 256,
    disk_mb: int = 1024,
) -> Instance:
    instance = Instance(
        org_id=org_id,
        name="i",
        status=status,
        server_id=server.id if server else None,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        last_activity_at=utcnow(),
    )
    session.add(instance)
    await session.flush()
    session.add(Vm(instance_id=instance.id, server_id=instance.server_id))
    await session.flush()
    return instance


async def make_layer(
    session: AsyncSession, org_id: str | None, server: ComputeServer, *, data_mb: int = 1
) -> Layer:
    layer = Layer(
        server_id=server.id, org_id=org_id, kind="snapshot", disk_mb=1024, data_bytes=data_mb << 20
    )
    session.add(layer)
    await session.flush()
    # Held where it was captured, as add_layer records it.
    session.add(LayerReplica(layer_id=layer.id, server_id=server.id, origin="captured"))
    await session.flush()
    return layer
