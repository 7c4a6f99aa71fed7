"""Port forwards and preview URLs: an instance's ports reached over HTTP by host name, and its
TCP ports through a WebSocket tunnel (docs/adr/0013-port-forwards.md).

forwards/tunnel.py is the one way the control plane opens a TCP connection to a port inside an
instance: `open_instance_tcp` finds the instance's node (the SSH gateway's `-L`), and
`connect_node_port` goes through a node already known (the preview proxy and the `connect`
tunnel, which find it in the preview cache, service.previews)."""

from forkyard.forwards.tunnel import InstanceTcp, connect_node_port, open_instance_tcp, relay

__all__ = ["InstanceTcp", "connect_node_port", "open_instance_tcp", "relay"]
