"""A TCP connection to a port inside an instance, from the control plane: the reusable piece
under preview URLs, the `connect` WebSocket tunnel and the SSH gateway's `-L`.

    tcp = await open_instance_tcp(db, settings.secret_key, instance_id, 8080, org_id=org)
    async with tcp:
        await tcp.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
        await tcp.write_eof()          # optional half-close
        while chunk := await tcp.read():
            ...                        # b"" is the end of what the port sent

or `await relay(tcp, reader, writer)` to pipe it to an asyncio stream pair until both ends are
done. The bytes travel over one WebSocket to the instance's node (`node/api/ports.py`), which
connects a socket it made inside the instance's network namespace (ADR 0013)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

import websockets
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from forkyard.compute.errors import InstanceNotRunning, NodeUnreachable
from forkyard.compute.models import ComputeServer, Instance
from forkyard.compute.node_client import NodeClient, node_clients
from forkyard.db.engine import Database
from forkyard.db.tenancy import owned
from forkyard.forwards.errors import PortRefused, PortUnreachable
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix
from forkyard.node import contract as c

# One WebSocket message at most (a read returns at most this much).
MAX_FRAME = 1024 * 1024


class InstanceTcp:
    """One TCP connection inside an instance. `read()` answers b"" once the port ended its
    side; `write_eof()` ends ours (a half-close); `aclose()` (or leaving `async with`) closes
    both. Errors while open surface as ConnectionError."""

    def __init__(self, ws: ClientConnection, instance_id: str, port: int) -> None:
        self._ws = ws
        self.instance_id = instance_id
        self.port = port
        self._eof = False

    async def read(self) -> bytes:
        if self._eof:
            return b""
        try:
            data = await self._ws.recv(decode=False)
        except websockets.ConnectionClosed:
            self._eof = True
            return b""
        if isinstance(data, str) or not data:
            self._eof = True
            return b""
        return data

    async def write(self, data: bytes) -> None:
        """Send bytes; waits while the node's side is not taking them (flow control)."""
        if not data:
            return
        try:
            for start in range(0, len(data), MAX_FRAME):
                await self._ws.send(data[start : start + MAX_FRAME])
        except websockets.ConnectionClosed as exc:
            raise ConnectionResetError("the instance's port closed the connection") from exc

    async def write_eof(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(b"")

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()

    async def __aenter__(self) -> InstanceTcp:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def connect_node_port(node: NodeClient, instance_id: str, port: int) -> InstanceTcp:
    """Connect through a node already known to hold the running instance."""
    url = "ws" + node.base_url.removeprefix("http").rstrip("/")
    url += f"/node/instances/{instance_id}/ports/{port}/connect"
    try:
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {node.rpc.secret}"},
            compression=None,
            proxy=None,
            max_size=MAX_FRAME + 1024,
            open_timeout=5,
            ping_interval=None,
        )
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        raise NodeUnreachable() from exc
    try:
        first = await asyncio.wait_for(ws.recv(), 10)
        answer = c.PortConnectOut.model_validate_json(first)
    except BaseException as exc:
        await ws.close()
        if isinstance(exc, Exception):
            raise NodeUnreachable() from exc
        raise
    if not answer.ok:
        await ws.close()
        if answer.code == "port_refused":
            raise PortRefused(details={"port": port})
        if answer.code == "instance_not_running":
            raise InstanceNotRunning(details={"status": "stopped"})
        raise PortUnreachable(details={"port": port})
    return InstanceTcp(ws, instance_id, port)


async def open_instance_tcp(
    db: Database, secret_key: str, instance_id: str, port: int, *, org_id: str | None = None
) -> InstanceTcp:
    """A TCP connection to 127.0.0.1:`port` inside a running instance. With `org_id`, an
    instance of another org is not found (404). Raises InstanceNotRunning (409, its status in
    `details.status`), PortRefused or PortUnreachable (502), NodeUnreachable (503)."""
    if not has_prefix(instance_id, "inst"):
        raise NotFound.of("Instance", instance_id)
    async with db.transaction() as session:
        query = (
            select(Instance.status, ComputeServer)
            .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
            .where(Instance.id == instance_id)
        )
        if org_id is not None:
            query = owned(query, org_id, Instance)
        row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound.of("Instance", instance_id)
    status, server = row
    if status != "running" or server is None:
        raise InstanceNotRunning(f"Instance {instance_id} is {status}.", details={"status": status})
    return await connect_node_port(node_clients.for_server(server, secret_key), instance_id, port)


async def relay(tcp: InstanceTcp, reader: asyncio.StreamReader, writer: Any) -> None:
    """Pipe `tcp` to an asyncio stream pair (or anything with write/drain/write_eof/close)
    until both directions ended, then close both."""

    async def upstream() -> None:
        while data := await reader.read(256 * 1024):
            await tcp.write(data)
        await tcp.write_eof()

    async def downstream() -> None:
        while data := await tcp.read():
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()

    try:
        results = await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        del results
    finally:
        await tcp.aclose()
        with contextlib.suppress(Exception):
            writer.close()
