"""The facts of port forwards (the events kernel: forkyard.events)."""

from __future__ import annotations

from typing import ClassVar

from forkyard.events import Event


class PortForwardEvent(Event):
    resource_type: ClassVar[str] = "port_forward"
    instance_id: str
    port: int
    protocol: str
    visibility: str


class PortForwardCreated(PortForwardEvent):
    type = "port_forward.created"


class PortForwardDeleted(PortForwardEvent):
    """Deleted by request (a forward deleted with its instance goes with `instance.deleted`)."""

    type = "port_forward.deleted"
