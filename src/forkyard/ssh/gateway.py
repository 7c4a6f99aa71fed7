"""The SSH server (asyncssh): the user name is an instance id, the key one of the account's.

A session is relayed to the instance's node (node/api/sessions.py): a shell or command under a
terminal when the client asked for one, else the command with its stdin piped and its exit
status returned. SFTP (and so scp) is served here from the files operations (ssh/sftp.py);
`-L` opens a TCP connection to the port inside the instance (forwards/tunnel.py). Sign-in
failures look alike whatever failed, and are rate limited per address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

import asyncssh
import websockets

from forkyard.compute.node_client import node_clients
from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.forwards.tunnel import open_instance_tcp, relay
from forkyard.kit.errors import ForkyardError, RateLimited
from forkyard.kit.ratelimit import limiter
from forkyard.node import contract as c
from forkyard.ssh import access
from forkyard.ssh.hostkey import load_host_key

log = logging.getLogger("forkyard.ssh")

# How often open connections are checked against their instance's status (a stopped instance
# ends its sessions) and stamped as activity.
WATCHDOG_S = 2.0
TOUCH_EVERY_S = 60.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
# What a client's environment may set in the instance (`SendEnv`): the locale, nothing else.
PASSED_ENV_PREFIXES = ("LANG", "LC_")


class GatewayConnection(asyncssh.SSHServer):
    """One client connection: its sign-in and what it may reach afterwards."""

    def __init__(self, gateway: SshGateway) -> None:
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.ip: str | None = None
        self.instance_id = ""
        self._keys: dict[str, access.Grant] = {}
        self.grant: access.Grant | None = None
        self.started = time.monotonic()
        self.sessions = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        _ack_promptly(conn)
        peer = conn.get_extra_info("peername")
        self.ip = peer[0] if peer else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.connections.discard(self)
        if self.grant is not None:
            self.gateway.background(
                access.audit(
                    self.gateway.db,
                    "ssh.session_ended",
                    self.grant,
                    self.instance_id,
                    self.ip,
                    {"duration_s": round(time.monotonic() - self.started, 1)},
                )
            )

    async def begin_auth(self, username: str) -> bool:
        self.instance_id = username
        try:
            limiter.hit(f"ssh-conn:{self.ip}", self.gateway.settings.ssh_auth_attempts_per_min)
        except RateLimited:
            self._keys = {}
            return True
        self._keys = (await access.sign_in(self.gateway.db, username)).keys
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        grant = self._keys.get(str(key.get_fingerprint("sha256")))
        if grant is None:
            try:
                limiter.hit(f"ssh-auth:{self.ip}", self.gateway.settings.ssh_auth_attempts_per_min)
            except RateLimited:
                if self.conn is not None:
                    self.conn.close()
            return False
        self.grant = grant
        return True

    def auth_completed(self) -> None:
        assert self.grant is not None
        self.gateway.connections.add(self)
        self.gateway.background(
            access.audit(
                self.gateway.db, "ssh.session_started", self.grant, self.instance_id, self.ip
            )
        )
        self.gateway.background(access.touch(self.gateway.db, [self.instance_id]))

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # remote forwarding (-R) would open a port on the gateway's host

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        """`ssh -L` to a port inside the instance: only its loopback exists there."""
        if self.grant is None or dest_host.lower() not in LOCAL_HOSTS:
            return False
        gateway, instance_id, org_id = self.gateway, self.instance_id, self.grant.org_id

        async def handler(
            reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]
        ) -> None:
            try:
                tcp = await open_instance_tcp(
                    gateway.db, gateway.settings.secret_key, instance_id, dest_port, org_id=org_id
                )
            except ForkyardError:
                writer.close()
                return
            await relay(tcp, reader, writer)  # type: ignore[arg-type]

        return handler


def _ack_promptly(conn: asyncssh.SSHServerConnection) -> None:
    """Acknowledge every segment at once instead of after the kernel's delayed-ACK timer.

    OpenSSH's client leaves Nagle's algorithm on outside interactive sessions, and several
    steps of a connection are two small writes in a row (the key exchange's init after its
    KEXINIT, NEWKEYS then the service request, ...): the second waits for the ACK of the
    first, which the gateway, with nothing to answer yet, would delay by ~40 ms. That was
    most of an `ssh host true` (bench/access.py ssh). TCP_QUICKACK does not stick, so it is
    set again on every read; one setsockopt per received chunk."""
    sock = conn.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    received = conn.data_received

    def data_received(data: bytes, datatype: Any = None) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        received(data, datatype)

    conn.data_received = data_received  # type: ignore[method-assign]
    # uvloop (how `forkyard serve` runs) looked the method up once, when the transport was
    # made: handing it the protocol again makes it see the wrapper (asyncio's own loop looks
    # it up on each read). Without this, every stall above came back under `forkyard serve`.
    transport = getattr(conn, "_transport", None)  # asyncssh keeps it there; no public name
    if transport is not None:
        transport.set_protocol(conn)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class SshGateway:
    """The SSH server of one API process: start() listens, close() ends every session."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.connections: set[GatewayConnection] = set()
        self._server: asyncssh.SSHAcceptor | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.host_key = load_host_key(settings.data_dir)

    async def start(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: GatewayConnection(self),
            self.settings.ssh_listen_host,
            self.settings.ssh_port,
            server_host_keys=[self.host_key],
            process_factory=self._process,
            sftp_factory=self._sftp,
            allow_scp=True,
            encoding=None,
            line_editor=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            keepalive_interval=30,
            reuse_address=True,
            server_version="Forkyard",
        )
        self._watchdog = asyncio.create_task(self._watch())
        log.info("SSH gateway listening on %s:%s", self.settings.ssh_listen_host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.get_port())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(BaseException):
                await self._watchdog
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for conn in list(self.connections):
            if conn.conn is not None:
                conn.conn.close()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)

    def background(self, coro: Any) -> None:
        """Bookkeeping (audit, activity) that must not hold up or fail a session."""

        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("SSH gateway bookkeeping failed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """End the connections of instances that stopped; stamp the others as activity."""
        last_touch = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_S)
            try:
                ids = sorted({c.instance_id for c in self.connections})
                if not ids:
                    continue
                status = await access.instance_status(self.db, ids)
                for conn in list(self.connections):
                    if status.get(conn.instance_id) != "running" and conn.conn is not None:
                        conn.conn.close()
                if time.monotonic() - last_touch >= TOUCH_EVERY_S:
                    last_touch = time.monotonic()
                    await access.touch(self.db, ids)
            except Exception:
                log.exception("SSH gateway watchdog failed")

    def _owner(self, conn: Any) -> GatewayConnection:
        owner = conn.get_owner()
        assert isinstance(owner, GatewayConnection) and owner.grant is not None
        return owner

    def _sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        from forkyard.ssh.sftp import InstanceSftp

        owner = self._owner(chan.get_connection())
        return InstanceSftp(chan, self, owner.instance_id)

    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        owner = self._owner(process.get_extra_info("connection"))
        code = 255
        try:
            code = await self._run(process, owner.instance_id)
        except ForkyardError as exc:
            process.stderr.write(f"forkyard: {exc.message}\r\n".encode())
        except Exception:
            log.exception("SSH session on %s failed", owner.instance_id)
            process.stderr.write(b"forkyard: the session failed\r\n")
        finally:
            process.exit(code)

    async def _run(self, process: asyncssh.SSHServerProcess[bytes], instance_id: str) -> int:
        # Looked up at sign-in, so normally cached; again here, as a long connection may open
        # a session after its instance moved or stopped.
        server = (await access.sign_in(self.db, instance_id)).server
        if server is None:
            process.stderr.write(f"forkyard: instance {instance_id} is not running\r\n".encode())
            return 255
        node = node_clients.for_server(server, self.settings.secret_key)
        term = process.get_terminal_type()
        cols, rows, _, _ = process.get_terminal_size()
        env = {
            str(k): str(v)
            for k, v in (process.env or {}).items()
            if str(k).startswith(PASSED_ENV_PREFIXES)
        }
        command = process.command
        if term:
            opened = c.SessionOpenIn(
                kind="pty", command=command, env=env, term=term, rows=rows or 24, cols=cols or 80
            )
        else:
            opened = c.SessionOpenIn(kind="exec", command=command or ["/bin/sh", "-l"], env=env)
        ws = await node.open_session(instance_id, opened)
        return await _relay_session(process, ws, interactive=bool(term))


async def _relay_session(
    process: asyncssh.SSHServerProcess[bytes], ws: Any, *, interactive: bool
) -> int:
    """Bytes between the SSH channel and the node's session until the command exits."""

    async def upstream() -> None:
        while True:
            try:
                data = await process.stdin.read(64 * 1024)
            except asyncssh.TerminalSizeChanged as exc:
                await ws.send(json.dumps({"type": "resize", "rows": exc.height, "cols": exc.width}))
                continue
            except asyncssh.BreakReceived:
                continue
            except asyncssh.SignalReceived:
                continue
            if not data:
                if not interactive:
                    await ws.send(json.dumps({"type": "eof"}))
                return
            await ws.send(data)

    feeder = asyncio.create_task(upstream())
    code = 255
    try:
        async for message in ws:
            if isinstance(message, bytes):
                stream = process.stderr if message[:1] == b"\x02" else process.stdout
                stream.write(message[1:])
                await stream.drain()
                continue
            event = json.loads(message)
            if event.get("type") == "exit":
                code = int(event.get("exit_code") or 0)
                break
            if event.get("type") == "error":
                process.stderr.write(f"forkyard: {event.get('message', '')}\r\n".encode())
                break
    except (websockets.ConnectionClosed, OSError, asyncssh.Error):
        pass
    finally:
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        with contextlib.suppress(Exception):
            await ws.close()
    return code
