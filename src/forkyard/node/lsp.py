"""Language servers inside instances, shared by every WebSocket open on the same (instance,
language, workspace root).

A server is a command the image has (guest op `lsp_servers`, guest/lsp.py) run with the agent's
exec op with piped stdin, in the root as its working directory. Its stdout is LSP's stdio
framing (`Content-Length: N\\r\\n\\r\\n` + N bytes of JSON); each client sees one JSON-RPC message
per WebSocket text message.

Sharing one server between clients (docs/adr/0017-lsp.md):
- Requests from clients get a fresh id of the node's counter before they reach the server; the
  server's response is sent, with the client's own id put back, to that client only.
  `$/cancelRequest` is translated the same way.
- `initialize` reaches the server once: the first client's request does; later clients get the
  same result without it (a server may not be initialized twice), and only the first
  `initialized` is passed on. `shutdown` is answered by the node (the server is shared) and
  `exit` ends only that client's connection.
- Notifications from the server (diagnostics, logs, progress) go to every client. Requests from
  the server (`workspace/configuration`, `client/registerCapability`, `workspace/applyEdit`)
  go to one client, the longest connected, whose answer goes back; a client that leaves with
  server requests unanswered has them answered with an error.
- Documents: a `didClose` is passed on only when no other client still has the document open,
  and a client that leaves closes the documents only it had open.
- With no client left the server is stopped after a grace (FORKYARD_LSP_IDLE_S, default 30 s):
  `shutdown`, `exit`, then its process group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from forkyard.guest import protocol as p
from forkyard.node.agent_client import AgentClient, ExecStream
from forkyard.node.errors import AgentOperationError, NodeError

log = logging.getLogger(__name__)

IDLE_GRACE_S = float(os.environ.get("FORKYARD_LSP_IDLE_S", "30"))
# One JSON-RPC message at most (a didOpen carries a whole file).
MAX_MESSAGE = 16 * 1024 * 1024
# Messages queued for a client that does not read; past this it is disconnected.
CLIENT_BACKLOG = 2000
MAX_SERVERS_PER_INSTANCE = 8
STOP_WAIT_S = 2.0

# JSON-RPC error codes (LSP: RequestCancelled, InternalError).
REQUEST_CANCELLED = -32800
INTERNAL_ERROR = -32603


class LanguageServerUnavailable(NodeError):
    status_code = 404
    code = "language_server_unavailable"
    message = "The instance's image has no language server for this language."


class LanguageServerFailed(NodeError):
    status_code = 502
    code = "language_server_failed"
    message = "The language server could not be started."


class InvalidRoot(NodeError):
    status_code = 422
    code = "invalid_root"
    message = "The workspace root is not a directory of the instance."


class TooManyLanguageServers(NodeError):
    status_code = 409
    code = "too_many_language_servers"
    message = "This instance already runs as many language servers as it may."


class Framer:
    """LSP's stdio framing: bytes in, whole message bodies out."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        bodies: list[bytes] = []
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > 64 * 1024:
                    raise ValueError("LSP header too long")
                return bodies
            length = -1
            for line in self._buffer[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length < 0 or length > MAX_MESSAGE:
                raise ValueError("LSP message without a valid Content-Length")
            start = end + 4
            if len(self._buffer) < start + length:
                return bodies
            bodies.append(self._buffer[start : start + length])
            self._buffer = self._buffer[start + length :]


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _key(request_id: Any) -> str:
    """A JSON-RPC id as a dict key: 1 and "1" are different ids."""
    return json.dumps(request_id)


@dataclass(eq=False)
class LspClient:
    """One WebSocket's end of a shared server: what the server says to it waits in `outbox`
    (None: the server is gone)."""

    id: int
    outbox: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_BACKLOG))
    # client's request id (as _key) -> the id the server saw
    requests: dict[str, int] = field(default_factory=dict)
    documents: set[str] = field(default_factory=set)
    closed: bool = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)
        if self.outbox.full():  # make room for the end marker
            with contextlib.suppress(asyncio.QueueEmpty):
                self.outbox.get_nowait()
            self.outbox.put_nowait(None)


@dataclass(eq=False)
class _Pending:
    client: LspClient
    client_id: Any
    initialize: bool = False


class LanguageServer:
    """One running server and the clients sharing it (rules in the module docstring)."""

    def __init__(
        self,
        hub: LspHub,
        key: tuple[str, str, str],
        stream: ExecStream,
    ) -> None:
        self.hub = hub
        self.key = key
        self.stream = stream
        self.started_at = time.time()
        self.clients: dict[int, LspClient] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._server_requests: dict[str, LspClient] = {}
        self._documents: dict[str, set[int]] = {}
        self._initialize: asyncio.Future[dict[str, Any]] | None = None
        self._initialized_sent = False
        self._write_lock = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._reader = asyncio.create_task(self._read())
        self.stopped = False

    @property
    def root(self) -> str:
        return self.key[2]

    # --- clients ---

    def attach(self, client: LspClient) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.clients[client.id] = client

    async def detach(self, client: LspClient) -> None:
        if self.clients.pop(client.id, None) is None:
            return
        client.close()
        for sid in client.requests.values():
            if sid in self._pending:
                await self._write(
                    {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": sid}}
                )
        for key, holder in list(self._server_requests.items()):
            if holder is client:
                del self._server_requests[key]
                await self._write(
                    {
                        "jsonrpc": "2.0",
                        "id": json.loads(key),
                        "error": {"code": REQUEST_CANCELLED, "message": "the client left"},
                    }
                )
        for uri in client.documents:
            holders = self._documents.get(uri, set())
            holders.discard(client.id)
            if not holders:
                self._documents.pop(uri, None)
                await self._write(
                    {
                        "jsonrpc": "2.0",
                        "method": "textDocument/didClose",
                        "params": {"textDocument": {"uri": uri}},
                    }
                )
        if not self.clients and not self.stopped:
            loop = asyncio.get_running_loop()
            grace = IDLE_GRACE_S if self.hub.grace_s is None else self.hub.grace_s
            self._idle = loop.call_later(grace, self._idle_expired)

    def _idle_expired(self) -> None:
        self._stopping = asyncio.ensure_future(self.stop())

    async def from_client(self, client: LspClient, message: dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            await self._client_request(client, method, message)
        elif isinstance(method, str):
            await self._client_notification(client, method, message)
        elif "id" in message and self._server_requests.pop(_key(message["id"]), None) is client:
            await self._write(message)  # its answer to a request of the server

    async def _client_request(
        self, client: LspClient, method: str, message: dict[str, Any]
    ) -> None:
        client_id = message["id"]
        if method == "shutdown":
            client.send({"jsonrpc": "2.0", "id": client_id, "result": None})
            return
        pending = _Pending(client, client_id)
        if method == "initialize":
            if self._initialize is not None:
                try:
                    result = await asyncio.shield(self._initialize)
                except LanguageServerFailed as exc:
                    client.send(_error(client_id, INTERNAL_ERROR, exc.message))
                    return
                client.send({"jsonrpc": "2.0", "id": client_id, "result": result})
                return
            self._initialize = asyncio.get_running_loop().create_future()
            pending.initialize = True
            params = message.get("params")
            if (
                isinstance(params, dict)
                and not params.get("rootUri")
                and not params.get("workspaceFolders")
            ):
                params["rootUri"] = "file://" + self.root
        sid = next(self._ids)
        self._pending[sid] = pending
        client.requests[_key(client_id)] = sid
        await self._write({**message, "id": sid})

    async def _client_notification(
        self, client: LspClient, method: str, message: dict[str, Any]
    ) -> None:
        params = message.get("params")
        if method == "initialized":
            if self._initialized_sent:
                return
            self._initialized_sent = True
        elif method == "exit":
            client.close()
            return
        elif method == "$/cancelRequest" and isinstance(params, dict):
            sid = client.requests.get(_key(params.get("id")))
            if sid is None:
                return
            message = {**message, "params": {**params, "id": sid}}
        elif method in ("textDocument/didOpen", "textDocument/didClose"):
            uri = _document_uri(params)
            if uri is not None:
                holders = self._documents.setdefault(uri, set())
                if method == "textDocument/didOpen":
                    holders.add(client.id)
                    client.documents.add(uri)
                else:
                    holders.discard(client.id)
                    client.documents.discard(uri)
                    if holders:
                        return  # another client still has it open
                    del self._documents[uri]
        await self._write(message)

    # --- the server ---

    async def _write(self, message: dict[str, Any]) -> None:
        if self.stopped:
            return
        data = frame(json.dumps(message).encode())
        async with self._write_lock:
            with contextlib.suppress(Exception):
                await self.stream.write(data)

    async def _read(self) -> None:
        framer = Framer()
        try:
            async for event in self.stream:
                if event.type == "stdout":
                    for body in framer.feed(event.data or b""):
                        try:
                            message = json.loads(body)
                        except ValueError:
                            continue
                        if isinstance(message, dict):
                            await self._from_server(message)
                elif event.type == "stderr":
                    continue  # its log; clients get window/logMessage for what matters
                elif event.type == "exit":
                    break
        except Exception as exc:
            log.info("language server %s ended: %s", self.key, exc)
        finally:
            await self._ended()

    async def _from_server(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            holder = next(iter(self.clients.values()), None)
            if holder is None:
                await self._write(_error(message["id"], REQUEST_CANCELLED, "no client"))
                return
            self._server_requests[_key(message["id"])] = holder
            holder.send(message)
        elif isinstance(method, str):
            for client in list(self.clients.values()):
                client.send(message)
        elif isinstance(message.get("id"), int):
            pending = self._pending.pop(message["id"], None)
            if pending is None:
                return
            pending.client.requests.pop(_key(pending.client_id), None)
            if pending.initialize and self._initialize is not None:
                if "result" in message:
                    self._initialize.set_result(message["result"])
                else:
                    self._initialize.set_exception(LanguageServerFailed())
                    self._initialize.exception()  # retrieved: later clients may never ask
                    self._initialize = None
            if not pending.client.closed:
                pending.client.send({**message, "id": pending.client_id})

    async def _ended(self) -> None:
        self.stopped = True
        if self._idle is not None:
            self._idle.cancel()
        self.hub.forget(self)
        if self._initialize is not None and not self._initialize.done():
            self._initialize.set_exception(LanguageServerFailed())
            self._initialize.exception()
        for client in list(self.clients.values()):
            client.close()
        await self.stream.aclose()

    async def stop(self) -> None:
        """Ask the server to leave (shutdown, exit); kill it if it does not in STOP_WAIT_S."""
        if self.stopped or self.clients:
            return
        self.hub.forget(self)
        await self._write({"jsonrpc": "2.0", "id": next(self._ids), "method": "shutdown"})
        await self._write({"jsonrpc": "2.0", "method": "exit"})
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), STOP_WAIT_S)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        await self.stream.aclose()


class LspHub:
    """The node's running language servers, by (instance, language, root)."""

    def __init__(self, grace_s: float | None = None) -> None:
        self.grace_s = grace_s
        self.servers: dict[tuple[str, str, str], LanguageServer] = {}
        self._starting: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._client_ids = itertools.count(1)

    def forget(self, server: LanguageServer) -> None:
        if self.servers.get(server.key) is server:
            del self.servers[server.key]

    def running(self, instance_id: str, language: str) -> list[LanguageServer]:
        return [
            s
            for (iid, lang, _), s in self.servers.items()
            if iid == instance_id and lang == language
        ]

    async def connect(
        self, agent: AgentClient, instance_id: str, language: str, root: str
    ) -> tuple[LanguageServer, LspClient]:
        """A client of the running server for the key, started first if there is none."""
        key = (instance_id, language, root)
        lock = self._starting.setdefault(key, asyncio.Lock())
        async with lock:
            server = self.servers.get(key)
            if server is None or server.stopped:
                server = await self._start(agent, key)
            client = LspClient(next(self._client_ids))
            server.attach(client)
            return server, client

    async def _start(self, agent: AgentClient, key: tuple[str, str, str]) -> LanguageServer:
        instance_id, language, root = key
        if sum(1 for k in self.servers if k[0] == instance_id) >= MAX_SERVERS_PER_INSTANCE:
            raise TooManyLanguageServers()
        servers = await available_servers(agent)
        offer = next((s for s in servers if s["language"] == language), None)
        if offer is None:
            raise LanguageServerUnavailable(details={"language": language})
        stream = agent.exec_stream(offer["argv"], cwd=root, stdin_pipe=True)
        try:
            await stream.__aenter__()
            first = await stream.__anext__()  # `start`, or the agent's refusal (no such root)
        except AgentOperationError as exc:
            await stream.aclose()
            if exc.code == p.E_SPAWN:  # its working directory is missing
                raise InvalidRoot(details={"root": root}) from exc
            raise LanguageServerFailed(details={"language": language}) from exc
        except Exception as exc:
            await stream.aclose()
            raise LanguageServerFailed(
                f"The language server could not start in {root}.",
                details={"language": language, "root": root},
            ) from exc
        if first.type != "start":
            await stream.aclose()
            raise LanguageServerFailed(details={"language": language, "root": root})
        server = LanguageServer(self, key, stream)
        self.servers[key] = server
        return server

    async def close(self) -> None:
        for server in list(self.servers.values()):
            server.clients.clear()
            await server.stop()


async def available_servers(agent: AgentClient) -> list[dict[str, Any]]:
    """The language servers on the instance's PATH (guest/lsp.py)."""
    answer = await agent._simple({"op": "lsp_servers"})
    servers = answer.get("servers")
    return servers if isinstance(servers, list) else []


def _document_uri(params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    document = params.get("textDocument")
    uri = document.get("uri") if isinstance(document, dict) else None
    return uri if isinstance(uri, str) else None


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
