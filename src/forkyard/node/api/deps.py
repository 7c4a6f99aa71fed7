"""What every router of the node's API reaches through one dependency: the driver and the
node's own settings, held on the app (node/server.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends
from starlette.requests import HTTPConnection

from forkyard.node.contract import NetworkIn, SandboxSpecIn
from forkyard.node.drivers.base import Driver, SandboxSpec
from forkyard.node.egress import DEFAULT_BLOCKED, NetworkPolicy, valid_ranges
from forkyard.node.errors import NodeError
from forkyard.node.layers import HonouredTickets, check_layer_id, transfer_client
from forkyard.node.lsp import LspHub


class UnknownImage(NodeError):
    status_code = 422
    code = "unknown_image"
    message = "This compute server has no such image."


class InvalidSpec(NodeError):
    status_code = 422
    code = "invalid_spec"
    message = "The sandbox spec is not valid."


class CaptureFailed(NodeError):
    code = "capture_failed"
    message = "The capture failed; the instance keeps running and no layer was kept."


@dataclass
class NodeContext:
    driver: Driver
    secret: str
    # Image names the control plane uses (e.g. `default`) -> rootfs paths on this node.
    images: dict[str, Path]
    # Image builds: the machine's image cache (the .deb cache) and the empty rootfs under suites.
    image_cache: Path
    honoured_tickets: HonouredTickets = field(default_factory=HonouredTickets)
    # One import per layer id at a time (kept: a lock dropped while another request waits on
    # it would let a third run beside it).
    import_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Language servers running in instances, shared by their clients (node/lsp.py).
    lsp: LspHub = field(default_factory=LspHub)
    # Where the port relay listens (node/port_relay.py); 0: no relay runs beside this API.
    relay_port: int = 0
    _transfers: httpx.AsyncClient | None = None

    def transfers(self) -> httpx.AsyncClient:
        """The client that pulls layers from other nodes: made on first use, on the serving
        loop, and reused (a new one costs ~50 ms)."""
        if self._transfers is None:
            self._transfers = transfer_client()
        return self._transfers

    def resolve_spec(self, instance_id: str, spec: SandboxSpecIn) -> SandboxSpec:
        """The control plane names images (`default`) and store layers (`layer_ids`, topmost
        first); the node turns both into paths: a layer's upper dir is a lowerdir of the stack.
        Only names this node knows become paths: no value of the spec can make the node stack
        a directory of the host under an instance's root."""
        image = self.images.get(spec.image)
        if image is None:
            raise UnknownImage(f"unknown image {spec.image[:100]!r}")
        layers = tuple(self.driver.layers.get(check_layer_id(lid)).upper for lid in spec.layer_ids)
        return SandboxSpec(
            instance_id=instance_id,
            image=image,
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            disk_mb=spec.disk_mb,
            env=spec.env,
            hostname=spec.hostname,
            pids_max=spec.pids_max,
            layers=layers,
            network=network_policy(spec.network),
        )


def network_policy(network: NetworkIn | None) -> NetworkPolicy:
    if network is None:
        return NetworkPolicy()
    if not valid_ranges(network.blocked):
        raise InvalidSpec("network.blocked holds IPv4 CIDRs only")
    return NetworkPolicy(
        egress=network.egress,
        allow=tuple(network.allow),
        blocked=tuple(network.blocked) or DEFAULT_BLOCKED,
    )


def node_of(connection: HTTPConnection) -> NodeContext:
    node: NodeContext = connection.app.state.node
    return node


Node = Annotated[NodeContext, Depends(node_of)]
