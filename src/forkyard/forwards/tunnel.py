"""A TCP connection to a port inside an instance, from the control plane: the reusable piece
under preview URLs, the `connect` WebSocket tunnel and the SSH gateway's `-L`.

    tcp = await open_instance_tcp(db, settings.secret_key, instance_id, 8080, org_id=org)
    async with tcp:
        await tcp.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
        await tcp.write_eof()          # optional half-close
        while chunk := await tcp.read():
            ...                        # b"" is the end of what the port sent

or `await relay(tcp, reader, writer)` to pipe it to an asyncio stream pair until both ends are
done. The bytes travel over a TCP connection to the instance's node port relay
(node/port_relay.py), which connects a socket it made inside the instance's network namespace
(ADR 0013). The connection was opened and signed in ahead of need (`_RelayConnections`) and is told
its target; after the node's answer it carries the bytes as they are."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from forkyard.compute.errors import InstanceNotRunning, NodeUnreachable
from forkyard.compute.models import ComputeServer, Instance
from forkyard.compute.node_client import NodeClient, node_clients
from forkyard.compute.node_client.warm import WarmPool
from forkyard.db.engine import Database
from forkyard.db.tenancy import owned
from forkyard.forwards.errors import PortRefused, PortUnreachable
from forkyard.kit.errors import ForkyardError, NotFound
from forkyard.kit.ids import has_prefix
from forkyard.node import contract as c

# One read at most: large enough that a download costs few event-loop turns per megabyte.
READ_CHUNK = 1024 * 1024
# Signed-in connections kept open to each node's relay (retired unused after warm.py's
# WARM_MAX_AGE_S, before the node's wait for a target ends). Each carries one connection; more
# are opened when half are taken.
WARM_PER_NODE = 4
WARM_MAX_AGE_S = 45.0
CONNECT_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 10.0


class InstanceTcp:
    """One TCP connection inside an instance. `read()` answers b"" once the port ended its
    side; `write_eof()` ends ours (a half-close); `aclose()` (or leaving `async with`) closes
    both. Errors while open surface as ConnectionError.

    Made with `wait=False`, the node's answer is still on its way: writes go ahead of it
    (the node reads them once connected, or drops them with the connection), and `ready()`
    (which the first read() calls) raises the refusal, as `connect_node_port` would have."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        instance_id: str,
        port: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.instance_id = instance_id
        self.port = port
        self._eof = False
        self._eof_sent = False
        self._answered = False
        self._closed = False

    async def ready(self) -> None:
        """Wait for the node's answer: returns once connected; PortRefused, PortUnreachable,
        InstanceNotRunning or NodeUnreachable otherwise."""
        if self._answered:
            return
        self._answered = True
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                line = await self._reader.readuntil(b"\n")
            answer = c.PortConnectOut.model_validate_json(line)
        except BaseException as exc:
            # No answer: the node restarted (its signed-in connections ended with it), refused
            # our sign-in, or said something that is not an answer.
            await self.aclose()
            if isinstance(exc, Exception):
                raise NodeUnreachable() from exc
            raise
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
            data = await self._reader.read(READ_CHUNK)
        except ConnectionError:
            data = b""
        if not data:
            self._eof = True
        return data

    async def write(self, data: bytes) -> None:
        """Send bytes; waits while the node's side is not taking them (flow control)."""
        if not data:
            return
        if self._writer.is_closing():
            raise ConnectionResetError("the instance's port closed the connection")
        self._writer.write(data)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ConnectionResetError("the instance's port closed the connection") from exc

    async def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(OSError, RuntimeError):
            if not self._writer.is_closing():
                self._writer.write_eof()

    async def aclose(self) -> None:
        """Close the connection (both directions; the node closes the port's side)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()

    async def __aenter__(self) -> InstanceTcp:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _RelayConnections:
    """Connections to one node's port relay, opened and signed in ahead of need
    (compute/node_client/warm.py) and each handed one target (`contract.PortConnectIn`) when
    taken, so a proxied request pays the target line and the node's namespace connect, not a
    TCP connect and a sign-in. One connection per target: each keeps its own TCP window, and a
    caller that stops reading stalls nothing but its own."""

    def __init__(self, node: NodeClient) -> None:
        self.node = node
        self._address: tuple[str, int] | None = None
        self.warm: WarmPool[Stream] = WarmPool(
            self.open,
            alive=lambda conn: not conn[0].at_eof() and not conn[1].is_closing(),
            discard=lambda conn: conn[1].close(),
            keep=WARM_PER_NODE,
            refill_below=WARM_PER_NODE // 2,
        )

    async def _relay_address(self) -> tuple[str, int]:
        """The relay listens on the host of the node's URL, on the port the node names."""
        if self._address is None:
            try:
                answer = await self.node.port_relay()
            except ForkyardError as exc:
                raise NodeUnreachable() from exc
            host = urlsplit(self.node.base_url).hostname or "127.0.0.1"
            self._address = (host, answer.port)
        return self._address

    async def open(self) -> Stream:
        host, port = await self._relay_address()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port, limit=READ_CHUNK)
        except (OSError, TimeoutError) as exc:
            self._address = None  # asked again next time: the relay may have moved
            raise NodeUnreachable() from exc
        writer.write(c.PORT_RELAY_GREETING + self.node.rpc.secret.encode() + b"\n")
        return reader, writer


_relays: dict[str, _RelayConnections] = {}


def _relay_for(node: NodeClient) -> _RelayConnections:
    relay = _relays.get(node.base_url)
    # Connections belong to the event loop that made them (tests run several loops in turn),
    # and to the node's secret: a node that restarted has a new one, and a new relay.
    if relay is None or relay.node is not node or relay.warm.loop is not asyncio.get_running_loop():
        if relay is not None and relay.warm.loop is asyncio.get_running_loop():
            relay.warm.close()
        relay = _relays[node.base_url] = _RelayConnections(node)
    return relay


async def connect_node_port(
    node: NodeClient, instance_id: str, port: int, *, wait: bool = True
) -> InstanceTcp:
    """Connect through a node already known to hold the running instance. With `wait=False`
    the answer is left to `InstanceTcp.ready()`: the caller's first bytes travel with the
    target instead of a round trip later (the preview proxy's request head)."""
    relay = _relay_for(node)
    target = c.PortConnectIn(instance_id=instance_id, port=port).model_dump_json().encode()
    reader_writer = relay.warm.take() or await relay.open()
    tcp = InstanceTcp(*reader_writer, instance_id, port)
    reader_writer[1].write(target + b"\n")
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
