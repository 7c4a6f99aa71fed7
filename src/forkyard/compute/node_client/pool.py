"""Clients by compute server: one per server, built from its row and rebuilt when the node
re-registers with a new URL or secret."""

from __future__ import annotations

from typing import Protocol

from forkyard.compute.node_client.client import NodeClient
from forkyard.kit.crypto import decrypt

# The purpose the node's secret is encrypted under in its ComputeServer row.
SECRET_PURPOSE = "node-secret"


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
