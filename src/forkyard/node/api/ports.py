"""Ports inside instances: a WebSocket per TCP connection, relayed by the node from a socket
it made in the instance's network namespace (node/ports.py, docs/adr/0013-port-forwards.md).

Protocol: the control plane opens the WebSocket ahead of need (node authentication, TCP and
the upgrade are paid then, not per request) and leaves it idle; when a connection is wanted
it sends one text message, `contract.PortConnectIn` {instance_id, port}. The node connects and
answers `contract.PortConnectOut` as JSON. When it says `ok`, binary messages carry the bytes
both ways; an empty binary message is the end of that direction (a TCP half-close); closing
the WebSocket closes the connection. When both directions ended, the node sends
`PortConnectOut` with code `done` and waits for the next target on the same WebSocket. A
WebSocket carries one TCP connection at a time, so each has its own TCP window: a reader that
stops reading holds up its own connection only."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node import ports
from forkyard.node.api.deps import Node

router = APIRouter(prefix="/node")

# How long a warm WebSocket may wait for its target; the control plane retires its idle ones
# sooner (forwards/tunnel.py WARM_MAX_AGE_S).
WARM_IDLE_S = 60.0


@router.websocket("/ports/connect")
async def port_connect(websocket: WebSocket, node: Node) -> None:
    """TCP connections to 127.0.0.1:port inside the instances the targets name, one at a time."""
    await websocket.accept()
    while await _one_connection(websocket, node):
        # Both directions ended cleanly: say so, and wait for the next target on this socket.
        done = c.PortConnectOut(ok=True, code="done", message=None)
        try:
            await websocket.send_text(done.model_dump_json())
        except Exception:
            return


async def _one_connection(websocket: WebSocket, node: Node) -> bool:
    """Wait for a target, connect it and relay it; whether the WebSocket may carry another."""
    try:
        message = await asyncio.wait_for(websocket.receive(), WARM_IDLE_S)
    except TimeoutError:
        with contextlib.suppress(Exception):
            await websocket.close()
        return False
    if message["type"] == "websocket.disconnect":
        return False
    try:
        try:
            target = c.PortConnectIn.model_validate_json(message.get("text") or "")
        except ValidationError as exc:
            raise ports.PortUnreachable("Name an instance and a port (1-65535).") from exc
        netns = node.driver.network_namespace(target.instance_id)
        reader, writer = await ports.connect(netns, target.port)
    except ForkyardError as exc:
        out = c.PortConnectOut(ok=False, code=exc.code, message=exc.message)
        with contextlib.suppress(Exception):
            await websocket.send_text(out.model_dump_json())
            await websocket.close()
        return False
    await websocket.send_text(c.PortConnectOut(ok=True, code=None, message=None).model_dump_json())
    return await relay(websocket, reader, writer)


async def relay(
    websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    """Bytes both ways until both directions ended or either side closed. Flow control is
    TCP's: a write waits for the socket to drain before the next message is read, and a send
    waits for the WebSocket's transport. True when both directions ended with their empty
    frame and the WebSocket is still open (it may carry another connection); otherwise the
    WebSocket is closed."""

    async def inbound() -> bool:
        """True at the caller's half-close (the answer may still come), False when it left."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return False
            data = message.get("bytes")
            if data is None:
                continue
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return True
            writer.write(data)
            await writer.drain()

    async def outbound() -> None:
        while True:
            data = await reader.read(ports.RELAY_CHUNK)
            await websocket.send_bytes(data)
            if not data:
                return

    tasks = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
    clean = False
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(t.exception() is not None for t in done):
                break
            if tasks[0] in done and not tasks[0].result():
                break
        else:
            clean = True
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        if not clean:
            with contextlib.suppress(Exception, WebSocketDisconnect):
                await websocket.close()
    return clean
