"""The node's port relay: TCP connections to ports inside its instances, for the control plane
(preview URLs, the `connect` tunnel, `ssh -L`; docs/adr/0013-port-forwards.md "The node hop").

A listener of its own beside the node API, speaking plain TCP: per connection, one line to sign
in, one line naming the target, one line of answer, then the connection's bytes both ways as
they are, with TCP's own half-close for the end of each direction. A WebSocket carried the same
before; its framing, masking and per-message tasks on both ends cost about 1 ms per request
and capped a download at a quarter of direct.

    control plane -> node   FORKYARD-PORTS/1 <node secret>\\n      (when opened, ahead of need)
    control plane -> node   {"instance_id": ..., "port": ...}\\n     (contract.PortConnectIn)
    node -> control plane   {"ok": true, ...}\\n                      (contract.PortConnectOut)
    then bytes both ways; either side's half-close ends its direction; closed when both ended

A wrong secret is answered by nothing but the connection's end; a target that is not a running
instance here, or a port nothing listens on, by a refusal line and the end. One connection
carries one target: the control plane keeps a few signed-in ones open ahead of need
(forwards/tunnel.py), and this side waits `WARM_IDLE_S` for their target."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from pydantic import ValidationError

from forkyard.kit.crypto import constant_time_equal
from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node import ports
from forkyard.node.drivers.base import Driver

log = logging.getLogger("forkyard.node.port_relay")

GREETING = c.PORT_RELAY_GREETING
# The sign-in line arrives with the connection; a connection that says nothing is dropped.
SIGN_IN_TIMEOUT_S = 5.0
# How long a signed-in connection may wait for its target; the control plane retires its
# unused ones sooner (forwards/tunnel.py WARM_MAX_AGE_S).
WARM_IDLE_S = 60.0
# The sign-in and target lines are short; a longer one is not ours.
LINE_LIMIT = 4096
# Bytes a relayed direction may have queued for its receiver before its reads pause: a few
# reads' worth, so the reader keeps reading while the other side's socket drains.
WRITE_BUFFER = 4 * 1024 * 1024


class PortRelay:
    """`await relay.start(host, port)` binds (port 0: any) and answers the bound port;
    `await relay.close()` stops listening and ends every connection it carries."""

    def __init__(self, driver: Driver, secret: str) -> None:
        self._driver = driver
        self._secret = secret
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        # IPPROTO_TCP spelled out, as for the node API (runner.py): asyncio sets TCP_NODELAY
        # only on sockets whose proto says TCP.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self._server = await asyncio.start_server(
            self._accepted, sock=sock, limit=ports.RELAY_CHUNK
        )
        self.port = sock.getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = await _line(reader, SIGN_IN_TIMEOUT_S)
        given = greeting.removeprefix(GREETING).decode("latin-1") if greeting else ""
        if not greeting.startswith(GREETING) or not constant_time_equal(given, self._secret):
            return
        line = await _line(reader, WARM_IDLE_S)
        if not line:
            return
        try:
            try:
                target = c.PortConnectIn.model_validate_json(line)
            except ValidationError as exc:
                raise ports.PortUnreachable("Name an instance and a port (1-65535).") from exc
            netns = self._driver.network_namespace(target.instance_id)
            app_reader, app_writer = await ports.connect(netns, target.port)
        except ForkyardError as exc:
            writer.write(_answer(False, exc.code, exc.message))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        writer.write(_answer(True, None, None))
        try:
            await relay(reader, writer, app_reader, app_writer)
        finally:
            app_writer.close()


async def _line(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """One line without its newline; b"" when the peer ended, said too much, or said nothing
    in time."""
    try:
        async with asyncio.timeout(timeout):
            line = await reader.readuntil(b"\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return b""
    if len(line) > LINE_LIMIT:
        return b""
    return line[:-1]


def _answer(ok: bool, code: str | None, message: str | None) -> bytes:
    return c.PortConnectOut(ok=ok, code=code, message=message).model_dump_json().encode() + b"\n"


async def relay(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Bytes both ways until both directions ended (each end's EOF passed on as a half-close)
    or either connection failed. Flow control is TCP's: a read waits for the other side's
    write to drain."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(ports.RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    for writer in (a_writer, b_writer):
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
    one = asyncio.ensure_future(pump(a_reader, b_writer))
    other = asyncio.ensure_future(pump(b_reader, a_writer))
    try:
        # Both ended, or one failed (a reset, a write to a closed peer), which ends both.
        await asyncio.wait((one, other), return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in (one, other):
            task.cancel()
        await asyncio.gather(one, other, return_exceptions=True)
