"""Bring a node's leftovers in line with what the control plane says should exist."""

from __future__ import annotations

from dataclasses import dataclass, field

from forkyard.node.drivers.base import Driver


@dataclass
class ReconcileReport:
    removed: set[str] = field(default_factory=set)
    cleaned: set[str] = field(default_factory=set)  # kept, but stale processes/mounts dropped
    removed_layers: set[str] = field(default_factory=set)


async def reconcile(
    driver: Driver, keep: set[str], keep_layers: set[str] | None = None
) -> ReconcileReport:
    """Destroy every instance the node holds that is not in `keep`.

    With `keep_layers` (the layer ids the control plane references), also delete every layer
    that is neither kept nor stacked under a kept layer or a remaining instance, and the
    leftovers of interrupted captures. Without it, layers are left alone.

    Kept instances that this driver is not running (a node restarted after a SIGKILL) are
    stopped cleanly: their disks stay, their stale mounts, cgroups and processes go, so the
    next start() boots them fresh.
    """
    report = ReconcileReport()
    for instance_id in sorted(driver.list_owned()):
        if instance_id not in keep:
            await driver.destroy(instance_id)
            report.removed.add(instance_id)
        elif driver.state(instance_id) != "running":
            await driver.stop(instance_id)
            report.cleaned.add(instance_id)
    if keep_layers is not None:
        report.removed_layers = await driver.sweep_layers(keep_layers)
    return report
