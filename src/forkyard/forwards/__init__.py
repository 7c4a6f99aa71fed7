"""Port forwards and preview URLs: an instance's ports reached over HTTP by host name, and its
TCP ports through a WebSocket tunnel (docs/adr/0013-port-forwards.md).

`open_instance_tcp` (forwards/tunnel.py) is the one way the control plane opens a TCP
connection to a port inside an instance; the SSH gateway's `-L` uses it too."""

from forkyard.forwards.tunnel import InstanceTcp, connect_node_port, open_instance_tcp, relay

__all__ = ["InstanceTcp", "connect_node_port", "open_instance_tcp", "relay"]
