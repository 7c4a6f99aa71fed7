"""Ports inside instances: where the node's port relay listens (node/port_relay.py). The
connections themselves go through the relay, not through this API (docs/adr/0013)."""

from __future__ import annotations

from fastapi import APIRouter

from forkyard.node import contract as c
from forkyard.node.api.deps import Node
from forkyard.node.ports import PortUnreachable

router = APIRouter(prefix="/node")


@router.get("/ports", response_model=c.PortRelayOut)
async def port_relay(node: Node) -> c.PortRelayOut:
    if not node.relay_port:
        raise PortUnreachable("This node runs no port relay.")
    return c.PortRelayOut(port=node.relay_port)
