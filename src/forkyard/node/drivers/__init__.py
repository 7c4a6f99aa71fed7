"""Instance drivers: the namespace sandbox (default) and, later, microVMs."""

from forkyard.node.drivers.base import Driver, InstanceInfo, InstanceStats, SandboxSpec

__all__ = ["Driver", "InstanceInfo", "InstanceStats", "SandboxSpec"]
