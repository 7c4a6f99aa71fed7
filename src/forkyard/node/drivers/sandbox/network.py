"""Egress of the sandbox driver's instances (node/egress.py, ADR 0015): set up once the agent
answers, changed while running, dropped at stop. An instance without egress ("none", the
default) costs nothing here: no device, rule or process.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forkyard.node.drivers.base import Driver, SandboxSpec
from forkyard.node.egress import EgressManager, NetworkPolicy, link_addresses
from forkyard.node.errors import InstanceNotFound, InstanceNotRunning

if TYPE_CHECKING:
    from forkyard.node.drivers.sandbox.launch import Running


class NetworkOps(Driver):
    """The egress part of SandboxDriver (which supplies the members declared below)."""

    network: EgressManager
    _running: dict[str, Running]

    if TYPE_CHECKING:

        def load_spec(self, instance_id: str) -> SandboxSpec | None: ...
        def _require(self, instance_id: str) -> Running: ...

    async def _apply_network(self, instance_id: str, policy: NetworkPolicy) -> None:
        d = self.instance_dir(instance_id)
        slot = int((d / "uid-range").read_text())
        had_link = self.network.policy(instance_id) is not None
        if policy.egress != "none":
            (d / "egress-slot").write_text(str(slot))  # what teardown removes, even after a crash
        await self.network.apply(instance_id, slot, self.network_namespace(instance_id), policy)
        if policy.egress == "none":
            (d / "egress-slot").unlink(missing_ok=True)
        if policy.egress != "none" and not had_link:  # DNS inside: the node's relay
            client = await self.agent(instance_id)
            await client.write_file("/etc/resolv.conf", f"nameserver {link_addresses(slot)[0]}\n")

    async def set_network(self, instance_id: str, policy: NetworkPolicy) -> None:
        async with self._lock(instance_id):
            spec = self.load_spec(instance_id)
            if spec is None:
                raise InstanceNotFound(f"no instance {instance_id} on this node")
            if self.state(instance_id) == "running":
                await self._apply_network(instance_id, policy)
                running = self._running[instance_id]
                running.spec = replace(running.spec, network=policy)
            spec = replace(spec, network=policy)
            (self.instance_dir(instance_id) / "spec.json").write_text(json.dumps(spec.to_json()))

    async def _remove_network(self, instance_id: str) -> None:
        """Nothing to do (no process run) unless the instance had egress."""
        marker = self.instance_dir(instance_id) / "egress-slot"
        try:
            slot = int(marker.read_text())
        except (OSError, ValueError):
            return
        await self.network.remove(instance_id, slot)
        marker.unlink(missing_ok=True)

    def network_namespace(self, instance_id: str) -> str:
        """Read-only: the sandbox's network namespace, as the /proc path of bwrap's child (the
        instance's pid-namespace init; bwrap itself stays in the host's namespaces)."""
        running = self._require(instance_id)
        pid = running.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if not children:
            raise InstanceNotRunning()
        return f"/proc/{children[0]}/ns/net"
