"""Calling compute servers: one pooled HTTP client per server, authenticated with the secret the
node registered. Node errors come back as the same ForkyardError codes.

A package: `client` (a server's typed client), `rpc` (its call channel), `errors` (a node's
error answer) and `pool` (clients by server). Its names are imported from here."""

from forkyard.compute.node_client.client import (
    LSP_MAX_MESSAGE,
    LSP_REFUSALS,
    SESSION_MAX_MESSAGE,
    NodeClient,
    b64decode,
)
from forkyard.compute.node_client.errors import RemoteError
from forkyard.compute.node_client.pool import SECRET_PURPOSE, NodeAddress, NodeClients, node_clients
from forkyard.compute.node_client.rpc import NodeRpc

__all__ = [
    "LSP_MAX_MESSAGE",
    "LSP_REFUSALS",
    "SECRET_PURPOSE",
    "SESSION_MAX_MESSAGE",
    "NodeAddress",
    "NodeClient",
    "NodeClients",
    "NodeRpc",
    "RemoteError",
    "b64decode",
    "node_clients",
]
