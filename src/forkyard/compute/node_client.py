"""Calling compute servers: one pooled HTTP client per server, authenticated with the secret the
node registered. Node errors come back as the same ForkyardError codes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from forkyard.compute.errors import NodeUnreachable
from forkyard.compute.models import ComputeServer
from forkyard.kit.crypto import decrypt
from forkyard.kit.errors import ForkyardError

SECRET_PURPOSE = "node-secret"


class RemoteError(ForkyardError):
    """An error the node reported, carried through with its code and status."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.status_code = status
        self.code = code


class NodeClient:
    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url
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

    async def read_bytes(self, path: str, body: Any) -> bytes:
        return (await self._call("POST", path, json=body)).content

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

    async def close(self) -> None:
        await self.http.aclose()


def _raise_remote(status: int, content: bytes) -> None:
    try:
        err = json.loads(content)["error"]
        raise RemoteError(status, err["code"], err["message"], err.get("details") or {})
    except (ValueError, KeyError, TypeError):
        raise RemoteError(502, "node_error", "The compute server failed.") from None


class NodeClients:
    """Clients by server id, rebuilt when a node re-registers with a new URL or secret."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[str, NodeClient]] = {}

    def for_server(self, server: ComputeServer, secret_key: str) -> NodeClient:
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
