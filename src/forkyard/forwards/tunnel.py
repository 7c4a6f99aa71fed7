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
connects a socket it made inside the instance's network namespace (ADR 0013). The WebSocket
was opened and authenticated ahead of need (`_WarmConnections`) and is told its target."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from types import TracebackType
from typing import Any

import websockets
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

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
# Warm WebSockets kept open to each node, and how long one is kept unused: less than the
# node's wait for a target (node/api/ports.py WARM_IDLE_S), so a taken one is still listening.
WARM_PER_NODE = 4
WARM_MAX_AGE_S = 45.0
# A WebSocket whose connection ended cleanly goes back to the pool (the node says `done`), kept
# up to this many per node; what it still had to deliver is read and dropped, up to a limit.
WARM_MAX_IDLE = 16
RECYCLE_WAIT_S = 2.0
RECYCLE_DRAIN_MAX = 256 * 1024


class InstanceTcp:
    """One TCP connection inside an instance. `read()` answers b"" once the port ended its
    side; `write_eof()` ends ours (a half-close); `aclose()` (or leaving `async with`) closes
    both. Errors while open surface as ConnectionError.

    Made with `wait=False`, the node's answer is still on its way: writes go ahead of it
    (the node reads them once connected, or drops them with the connection), and `ready()`
    (which the first read() calls) raises the refusal, as `connect_node_port` would have."""

    def __init__(
        self,
        ws: ClientConnection,
        instance_id: str,
        port: int,
        pool: _WarmConnections | None = None,
    ) -> None:
        self._ws = ws
        self.instance_id = instance_id
        self.port = port
        self._pool = pool  # where the WebSocket goes back to once this connection ended
        self._eof = False
        self._eof_sent = False
        self._answered = False
        self._usable = False  # connected, and nothing went wrong on the WebSocket since
        self._closed = False

    async def ready(self) -> None:
        """Wait for the node's answer: returns once connected; PortRefused, PortUnreachable,
        InstanceNotRunning or NodeUnreachable otherwise."""
        if self._answered:
            return
        self._answered = True
        try:
            first = await asyncio.wait_for(self._ws.recv(), 10)
            answer = c.PortConnectOut.model_validate_json(first)
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, Exception):
                raise NodeUnreachable() from exc
            raise
        self._usable = answer.ok
        if not answer.ok:
            await self.aclose()
            if answer.code == "port_refused":
                raise PortRefused(details={"port": self.port})
            if answer.code in ("instance_not_running", "instance_not_found"):
                raise InstanceNotRunning(details={"status": "stopped"})
            raise PortUnreachable(details={"port": self.port})

    async def read(self) -> bytes:
        await self.ready()
        if self._eof:
            return b""
        try:
            data = await self._ws.recv(decode=False)
        except websockets.ConnectionClosed:
            self._eof, self._usable = True, False
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
            self._usable = False
            raise ConnectionResetError("the instance's port closed the connection") from exc

    async def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(b"")

    async def aclose(self) -> None:
        """Close the connection. Its WebSocket goes back to the pool when the node confirms
        the end of both directions (read in the background); otherwise it is closed."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None and self._usable and self._ws.state is State.OPEN:
            self._pool.recycle(self._ws, eof_seen=self._eof, eof_sent=self._eof_sent)
            return
        with contextlib.suppress(Exception):
            await self._ws.close()

    async def __aenter__(self) -> InstanceTcp:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _WarmConnections:
    """Authenticated WebSockets to one node's port route, opened ahead of need and each
    handed one target (`contract.PortConnectIn`) when taken, so a proxied request pays a
    message round trip to the node and its namespace connect, not a TCP connect, an HTTP
    upgrade and the node's authentication. A WebSocket whose connection ended cleanly comes
    back (`recycle`), so in steady use none is opened at all. A WebSocket carries one TCP
    connection at a time: each keeps its own TCP window, and a caller that stops reading
    stalls nothing but its own.
    """

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.loop = asyncio.get_running_loop()
        self._idle: deque[tuple[float, ClientConnection]] = deque()
        self._filling: asyncio.Task[None] | None = None

    async def open(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.secret}"},
                compression=None,
                proxy=None,
                max_size=MAX_FRAME + 1024,
                open_timeout=5,
                ping_interval=None,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise NodeUnreachable() from exc

    def take(self) -> ClientConnection | None:
        """A warm connection young enough that the node still waits on it, or None."""
        now = time.monotonic()
        found = None
        while self._idle and found is None:
            born, ws = self._idle.popleft()
            if now - born < WARM_MAX_AGE_S and ws.state is State.OPEN:
                found = ws
            else:
                _closing.add(task := asyncio.create_task(ws.close()))
                task.add_done_callback(_closing.discard)
        # Connections come back after use, so new ones are opened only when few are left.
        if len(self._idle) < WARM_PER_NODE // 2 and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill())
        return found

    def recycle(self, ws: ClientConnection, *, eof_seen: bool, eof_sent: bool) -> None:
        _closing.add(task := asyncio.create_task(self._recycle(ws, eof_seen, eof_sent)))
        task.add_done_callback(_closing.discard)

    async def _recycle(self, ws: ClientConnection, eof_seen: bool, eof_sent: bool) -> None:
        """End our direction if the caller did not, drop what the port still sends (a caller
        that closed early did not want it), and take the WebSocket back once the node says
        `done`: nothing of this connection can follow that on the WebSocket. Anything else
        (a slow port, a lot left to read, an error) closes it."""
        try:
            if not eof_sent:
                await ws.send(b"")
            drained = 0
            async with asyncio.timeout(RECYCLE_WAIT_S):
                while True:
                    message = await ws.recv()
                    if isinstance(message, str):
                        if c.PortConnectOut.model_validate_json(message).code != "done":
                            raise ConnectionError("not the end of the connection")
                        break
                    drained += len(message)
                    if drained > RECYCLE_DRAIN_MAX or (eof_seen and message):
                        raise ConnectionError("more to read than is worth draining")
            if len(self._idle) >= WARM_MAX_IDLE:
                raise ConnectionError("enough idle ones")
            self._idle.append((time.monotonic(), ws))
        except Exception:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _fill(self) -> None:
        while len(self._idle) < WARM_PER_NODE:
            try:
                ws = await self.open()
            except NodeUnreachable:
                return  # the next take() tries again
            self._idle.append((time.monotonic(), ws))


_warm: dict[tuple[str, str], _WarmConnections] = {}
_closing: set[asyncio.Task[None]] = set()


def _warm_for(node: NodeClient) -> _WarmConnections:
    url = "ws" + node.base_url.removeprefix("http").rstrip("/") + "/node/ports/connect"
    key = (url, node.rpc.secret)
    pool = _warm.get(key)
    # Connections belong to the event loop that made them (tests run several loops in turn).
    if pool is None or pool.loop is not asyncio.get_running_loop():
        pool = _warm[key] = _WarmConnections(url, node.rpc.secret)
    return pool


async def connect_node_port(
    node: NodeClient, instance_id: str, port: int, *, wait: bool = True
) -> InstanceTcp:
    """Connect through a node already known to hold the running instance. With `wait=False`
    the answer is left to `InstanceTcp.ready()`: the caller's first bytes travel with the
    target instead of a round trip later (the preview proxy's request head)."""
    pool = _warm_for(node)
    target = c.PortConnectIn(instance_id=instance_id, port=port).model_dump_json()
    ws = pool.take()
    if ws is not None:
        tcp = InstanceTcp(ws, instance_id, port, pool)
        try:
            await ws.send(target)
            if wait:
                await tcp.ready()
            return tcp
        except websockets.ConnectionClosed:
            await tcp.aclose()  # the node restarted, or retired it just now: a fresh one
        except NodeUnreachable as exc:
            if not isinstance(exc.__cause__, websockets.ConnectionClosed):
                raise
    ws = await pool.open()
    tcp = InstanceTcp(ws, instance_id, port, pool)
    try:
        await ws.send(target)
    except websockets.ConnectionClosed as exc:
        await tcp.aclose()
        raise NodeUnreachable() from exc
    if wait:
        await tcp.ready()
    return tcp


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
