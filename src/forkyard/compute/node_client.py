"""Calling compute servers: one pooled HTTP client per server, authenticated with the secret the
node registered. Node errors come back as the same ForkyardError codes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from forkyard.compute.errors import CallTooLarge, NodeUnreachable
from forkyard.kit.crypto import decrypt
from forkyard.kit.errors import ForkyardError
from forkyard.node.rpc import MAX_MESSAGE

SECRET_PURPOSE = "node-secret"


class RemoteError(ForkyardError):
    """An error the node reported, carried through with its code and status. A node's own
    failure (5xx) describes the host (paths, tool output): callers get a generic message and
    no details, and the node's text stays in `node_message` for the logs."""

    GENERIC = "The compute server could not do that."

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.node_message = message
        internal = status >= 500 and status != 503
        super().__init__(
            self.GENERIC if internal else message, details=None if internal else details
        )
        self.status_code = status
        self.code = code


class NodeRpc:
    """The control plane's end of the node's call channel (node/rpc.py): one WebSocket, opened
    on first use and again after it drops, with any number of calls in flight on it."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.url = "ws" + base_url.removeprefix("http").rstrip("/") + "/node/rpc"
        self.secret = secret
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def _connection(self) -> ClientConnection:
        async with self._connecting:
            if self._ws is not None and self._reader is not None and not self._reader.done():
                return self._ws
            try:
                self._ws = await connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.secret}"},
                    compression=None,
                    proxy=None,
                    max_size=MAX_MESSAGE,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                raise NodeUnreachable(details={"server": self.url.split("//")[-1]}) from exc
            self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                    future = self._pending.pop(message.get("id"), None)
                except (ValueError, TypeError, AttributeError):
                    continue  # one bad answer is lost alone; the channel carries on
                if future is not None and not future.done():
                    future.set_result(message)
        except (websockets.WebSocketException, OSError):
            pass
        finally:
            # Whatever was in flight on this connection will never be answered.
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(NodeUnreachable())
            self._pending.clear()

    async def call(
        self, op: str, instance_id: str, params: dict[str, Any], *, timeout: float
    ) -> Any:
        call_id = next(self._ids)
        message = json.dumps(
            {"id": call_id, "op": op, "instance": instance_id, "params": params},
            separators=(",", ":"),
        )
        if len(message) > MAX_MESSAGE:  # the node would close the channel on it
            raise CallTooLarge(details={"max_bytes": MAX_MESSAGE})
        ws = await self._connection()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            await ws.send(message)
            answer = await asyncio.wait_for(future, timeout)
        except BaseException as exc:
            self._pending.pop(call_id, None)
            if not future.done() or future.cancelled():
                # Cancelled or timed out: the node stops the work (an exec is killed).
                with contextlib.suppress(Exception):
                    await asyncio.shield(ws.send(json.dumps({"id": call_id, "cancel": True})))
            if isinstance(exc, (TimeoutError, websockets.WebSocketException, OSError)):
                raise NodeUnreachable(details={"server": self.url.split("//")[-1]}) from exc
            raise
        if not answer.get("ok"):
            err = answer.get("error") or {}
            raise RemoteError(
                int(answer.get("status") or 502),
                err.get("code", "node_error"),
                err.get("message", "The compute server failed."),
                err.get("details") or {},
            )
        return answer["result"]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader


class NodeClient:
    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url
        self.rpc = NodeRpc(base_url, secret)
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=50, max_connections=200),
        )

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            r = await self.http.request(
                method,
                path,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadTimeout,
        ) as exc:
            raise NodeUnreachable(details={"server": self.base_url.split("//")[-1]}) from exc
        if r.status_code >= 400:
            _raise_remote(r.status_code, r.content)
        return r

    async def json(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        r = await self._call(method, path, json=body, timeout=timeout)
        return r.json()

    async def read_stream(self, path: str, body: Any) -> AsyncIterator[bytes]:
        """The node's streamed answer, chunk by chunk as it arrives; its error answer is raised
        here, before the first chunk. The caller iterates (or closes) what it gets."""
        request = self.http.build_request(
            "POST", path, json=body, timeout=httpx.Timeout(60.0, connect=5.0)
        )
        try:
            r = await self.http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise NodeUnreachable() from exc
        if r.status_code >= 400:
            try:
                content = await r.aread()
            finally:
                await r.aclose()
            _raise_remote(r.status_code, content)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in r.aiter_raw():
                    yield chunk
            finally:
                await r.aclose()

        return chunks()

    async def upload(self, path: str, params: dict[str, Any], content: bytes) -> Any:
        """PUT a file's bytes to the node, which streams them to the agent (files too large
        for one call-channel message)."""
        r = await self._call(
            "PUT",
            path,
            params=params,
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=300.0,
        )
        return r.json()

    async def stream(self, path: str, body: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self.http.stream(
                "POST", path, json=body, timeout=httpx.Timeout(None, connect=5.0)
            ) as r:
                if r.status_code >= 400:
                    _raise_remote(r.status_code, await r.aread())
                async for line in r.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise NodeUnreachable() from exc

    async def call(
        self, op: str, instance_id: str, params: dict[str, Any], *, timeout: float = 60.0
    ) -> Any:
        """A hot-path call (exec, small file operations) over the node's call channel."""
        return await self.rpc.call(op, instance_id, params, timeout=timeout)

    async def close(self) -> None:
        await self.rpc.close()
        await self.http.aclose()


def _raise_remote(status: int, content: bytes) -> None:
    try:
        err = json.loads(content)["error"]
        raise RemoteError(status, err["code"], err["message"], err.get("details") or {})
    except (ValueError, KeyError, TypeError):
        raise RemoteError(502, "node_error", "The compute server failed.") from None


class NodeAddress(Protocol):
    """What a client needs of a compute server: a ComputeServer row, or the exec hot path's
    columns of one."""

    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def secret_encrypted(self) -> str: ...


class NodeClients:
    """Clients by server id, rebuilt when a node re-registers with a new URL or secret."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[str, NodeClient]] = {}

    def for_server(self, server: NodeAddress, secret_key: str) -> NodeClient:
        fingerprint = f"{server.url}|{server.secret_encrypted}"
        cached = self._clients.get(server.id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        client = NodeClient(
            server.url, decrypt(secret_key, SECRET_PURPOSE, server.secret_encrypted)
        )
        self._clients[server.id] = (fingerprint, client)
        return client

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()


node_clients = NodeClients()


def b64decode(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""
