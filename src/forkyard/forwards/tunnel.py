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
from collections import deque
from types import TracebackType
from typing import Any, cast
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
# Received and not yet read, before reading from the node pauses; and what may wait to be sent
# to it before a write waits.
READ_AHEAD = 4 * 1024 * 1024
WRITE_BUFFER = 4 * 1024 * 1024
# The node's answer line is a small JSON object.
ANSWER_LIMIT = 4096
# Signed-in connections kept open to each node's relay (retired unused after warm.py's
# WARM_MAX_AGE_S, before the node's wait for a target ends). Each carries one connection; more
# are opened when half are taken.
WARM_PER_NODE = 4
WARM_MAX_AGE_S = 45.0
CONNECT_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 10.0


class _RelayEnd(asyncio.Protocol):
    """Our end of one port relay connection. What arrives is kept as the chunks the transport
    hands over, not copied into a buffer and out again (a download's bytes pass here once),
    and reading pauses while more than READ_AHEAD is queued; writes wait while the transport
    says its buffer is full."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._ended = False  # the node's side ended (EOF) or the connection was lost
        self.lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not a subclass of asyncio.Transport, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > READ_AHEAD and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return True  # keep our direction open: the node's half-close is not the end of ours

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = self.lost = True
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def finished(self) -> bool:
        """Nothing more will arrive and nothing is left to read (a node that restarted ends
        the connections it had signed in)."""
        return self._ended and not self._chunks

    async def read(self) -> bytes:
        """What has arrived (at most READ_CHUNK, unless one chunk is larger); b"" at the end."""
        while not self._chunks and not self._ended:
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        if not self._chunks:
            return b""
        data = self._chunks.popleft()
        if self._chunks and len(data) < READ_CHUNK:
            parts = [data]
            size = len(data)
            while self._chunks and size + len(self._chunks[0]) <= READ_CHUNK:
                size += len(self._chunks[0])
                parts.append(self._chunks.popleft())
            data = b"".join(parts)
        self._queued -= len(data)
        if self._reading_paused and self._queued <= READ_AHEAD // 2 and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def read_line(self) -> bytes:
        """Up to and without the first newline; what follows it stays to be read."""
        seen = b""
        while True:
            data = await self.read()
            if not data:
                raise ConnectionResetError("the connection ended before a whole line")
            seen += data
            line, newline, rest = seen.partition(b"\n")
            if newline:
                if rest:
                    self._chunks.appendleft(rest)
                    self._queued += len(rest)
                return line
            if len(seen) > ANSWER_LIMIT:
                raise ConnectionResetError("not an answer of the node's")

    async def write(self, data: bytes) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the instance's port closed the connection")
        self.transport.write(data)
        if self._writing_paused:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            if self.lost:
                raise ConnectionResetError("the instance's port closed the connection")


class InstanceTcp:
    """One TCP connection inside an instance. `read()` answers b"" once the port ended its
    side; `write_eof()` ends ours (a half-close); `aclose()` (or leaving `async with`) closes
    both. Errors while open surface as ConnectionError.

    Made with `wait=False`, the node's answer is still on its way: writes go ahead of it
    (the node reads them once connected, or drops them with the connection), and `ready()`
    (which the first read() calls) raises the refusal, as `connect_node_port` would have."""

    def __init__(self, end: _RelayEnd, instance_id: str, port: int) -> None:
        self._end = end
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
                line = await self._end.read_line()
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
        data = await self._end.read()
        if not data:
            self._eof = True
        return data

    async def write(self, data: bytes) -> None:
        """Send bytes; waits while the node's side is not taking them (flow control)."""
        if data:
            await self._end.write(data)

    async def write_eof(self) -> None:
        if self._eof_sent:
            return
        self._eof_sent = True
        transport = self._end.transport
        with contextlib.suppress(OSError, RuntimeError):
            if transport is not None and not transport.is_closing():
                transport.write_eof()

    async def aclose(self) -> None:
        """Close the connection (both directions; the node closes the port's side)."""
        if self._closed:
            return
        self._closed = True
        if self._end.transport is not None:
            self._end.transport.close()

    async def __aenter__(self) -> InstanceTcp:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _RelayConnections:
    """Connections to one node's port relay, opened and signed in ahead of need
    (compute/node_client/warm.py) and each handed one target (`contract.PortConnectIn`) when
    taken, so a proxied request pays the target line and the node's namespace connect, not a
    TCP connect and a sign-in. One connection per target: each keeps its own TCP window, and a
    caller that stops reading stalls nothing but its own."""

    def __init__(self, node: NodeClient) -> None:
        self.node = node
        self._address: tuple[str, int] | None = None
        self.warm: WarmPool[_RelayEnd] = WarmPool(
            self.open,
            alive=lambda end: not end.finished(),
            discard=lambda end: end.transport.close() if end.transport else None,
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

    async def open(self) -> _RelayEnd:
        host, port = await self._relay_address()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, end = await asyncio.get_running_loop().create_connection(_RelayEnd, host, port)
        except (OSError, TimeoutError) as exc:
            self._address = None  # asked again next time: the relay may have moved
            raise NodeUnreachable() from exc
        assert end.transport is not None
        end.transport.write(c.PORT_RELAY_GREETING + self.node.rpc.secret.encode() + b"\n")
        return end


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
    end = relay.warm.take() or await relay.open()
    tcp = InstanceTcp(end, instance_id, port)
    await end.write(target + b"\n")
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
