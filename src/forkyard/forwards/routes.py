"""Port forwards (tag port_forwards) and the TCP tunnel of a `tcp` forward."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Request, Response, WebSocket

from forkyard.compute.node_client import node_clients
from forkyard.db.session import DbSession, ReadSession
from forkyard.forwards import schemas, service
from forkyard.forwards.models import PortForward
from forkyard.forwards.tunnel import connect_node_port
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.routing import protected_router
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import ForkyardError
from forkyard.kit.pagination import Page

router = protected_router("port_forwards", prefix="/v1/instances")
# WebSocket routes take no Request-based dependency: the tunnel authenticates by itself.
tunnels = APIRouter(prefix="/v1/instances", tags=["port_forwards"])
# An open tunnel stamps its instance as active this often (the idle timeout counts minutes).
TUNNEL_TOUCH_EVERY_S = 60.0


@router.post("/{id}/port-forwards", status_code=201, response_model=schemas.PortForwardOut)
async def create_port_forward(
    id: str,
    body: schemas.PortForwardCreate,
    request: Request,
    session: DbSession,
    principal: Writer,
) -> schemas.PortForwardOut:
    """Forward a port of the instance: an HTTP preview URL or a TCP tunnel; a port once only."""
    fwd = await service.create_forward(session, principal, id, body)
    return service.forward_out(settings_of(request), fwd)


@router.get("/{id}/port-forwards", response_model=Page[schemas.PortForwardOut])
async def list_port_forwards(
    id: str, request: Request, session: ReadSession, principal: Reader
) -> Page[schemas.PortForwardOut]:
    """The instance's port forwards, by port."""
    from forkyard.compute.service import get_instance

    await get_instance(session, principal, id)
    rows = (
        await session.execute(service.forwards_query(principal, id).order_by(PortForward.port))
    ).scalars()
    settings = settings_of(request)
    return Page(data=[service.forward_out(settings, f) for f in rows], next_cursor=None)


@router.delete("/{instance_id}/port-forwards/{forward_id}", status_code=204)
async def delete_port_forward(
    instance_id: str, forward_id: str, session: DbSession, principal: Writer
) -> Response:
    """Stop forwarding the port; its preview URL and share links stop working at once."""
    await service.delete_forward(session, principal, instance_id, forward_id)
    return Response(status_code=204)


@router.post("/{instance_id}/port-forwards/{forward_id}/share", response_model=schemas.ShareOut)
async def share_port_forward(
    instance_id: str, forward_id: str, request: Request, session: ReadSession, principal: Writer
) -> schemas.ShareOut:
    """A short-lived link that opens a private preview for whoever has it (that port only)."""
    return await service.share_forward(
        session, settings_of(request), principal, instance_id, forward_id
    )


@tunnels.websocket("/{instance_id}/port-forwards/{forward_id}/connect")
async def connect_port_forward(websocket: WebSocket, instance_id: str, forward_id: str) -> None:
    """A TCP forward's tunnel: binary messages carry the bytes both ways; an empty one ends
    the caller's side (a half-close); the socket closes with 4404 (no forward), 4409 (the
    instance is not running) or 4502 (nothing listens on the port). An open tunnel is activity
    for the instance's idle timeout."""
    from forkyard.identity.deps import get_principal

    # Authenticated as a write, like the terminal and `ssh -L`: a tunnel reads and changes
    # whatever listens inside, so a read-only key is refused, and a session cookie needs an
    # allowed Origin (a page of another origin, a preview app on a sibling host among them,
    # cannot open one with a visitor's cookie).
    try:
        principal = await get_principal(
            Request({**websocket.scope, "type": "http", "method": "POST"})
        )
    except ForkyardError as exc:
        await websocket.close(4401 if exc.status_code == 401 else 4403, exc.code)
        return
    db = websocket.app.state.db
    # Where it goes, as the preview finds it (service.previews): another org's forward is
    # absent, as on every route.
    found = await service.tunnel_target(db, instance_id, forward_id)
    await websocket.accept()
    if found is None or found[1].org_id != principal.org_id:
        await websocket.close(4404, "port forward not found")
        return
    port, target = found
    if target.instance_status != "running" or target.server is None:
        await websocket.close(4409, "instance_not_running")
        return
    node = node_clients.for_server(target.server, websocket.app.state.settings.secret_key)
    try:
        tcp = await connect_node_port(node, instance_id, port)
    except ForkyardError as exc:
        # Perhaps the instance moved or stopped and its announcement is still on its way.
        service.previews.forget(instance_id)
        code = {409: 4409, 404: 4404}.get(exc.status_code, 4502)
        await websocket.close(code, exc.code)
        return

    async def up() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data == b"":
                await tcp.write_eof()
            elif data:
                await tcp.write(data)

    async def down() -> None:
        while data := await tcp.read():
            await websocket.send_bytes(data)
        await websocket.send_bytes(b"")

    async def active() -> None:
        while True:
            await db.plain(service.PREVIEW_TOUCH, {"p_instance_id": instance_id, "p_now": utcnow()})
            await asyncio.sleep(TUNNEL_TOUCH_EVERY_S)

    async with tcp:
        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        touching = asyncio.create_task(active())
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in [*tasks, touching]:
            t.cancel()
        await asyncio.gather(*tasks, touching, return_exceptions=True)
    with contextlib.suppress(Exception):
        await websocket.close()
