"""An instance's lifecycle: its statuses and the changes allowed between them. Every change of
an instance's status goes through `transition` (or `instances.enter`, which also emits the fact)."""

from __future__ import annotations

from enum import StrEnum

from forkyard.compute.errors import InvalidTransition
from forkyard.compute.models import Instance
from forkyard.kit.clock import utcnow


class InstanceStatus(StrEnum):
    PROVISIONING = "provisioning"  # placed, its boot queued or under way
    RUNNING = "running"
    STOPPING = "stopping"  # its stop queued
    STOPPED = "stopped"  # disk kept, no processes
    ERROR = "error"  # boot or setup failed, its VM exited, or its server went silent
    DELETING = "deleting"  # its destroy queued; the row goes with it


S = InstanceStatus
# from -> the statuses it may become. Deleting is reachable from every other status and leads
# nowhere (the destroy job removes the row).
TRANSITIONS: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    S.PROVISIONING: frozenset({S.RUNNING, S.ERROR, S.DELETING}),
    S.RUNNING: frozenset({S.STOPPING, S.ERROR, S.DELETING}),
    S.STOPPING: frozenset({S.STOPPED, S.DELETING}),
    S.STOPPED: frozenset({S.PROVISIONING, S.DELETING}),
    # a failed instance can be started or stopped again, and runs again on its own when the
    # server that went silent comes back with its VM still up
    S.ERROR: frozenset({S.PROVISIONING, S.STOPPING, S.RUNNING, S.DELETING}),
    S.DELETING: frozenset(),
}
# Statuses that count against an org's quotas (every one but deleting).
LIVE_STATUSES = tuple(s.value for s in InstanceStatus if s is not S.DELETING)


def can_transition(current: str, to: InstanceStatus) -> bool:
    return to in TRANSITIONS.get(InstanceStatus(current), frozenset())


def transition(
    instance: Instance, to: InstanceStatus, *, action: str, reason: str | None = None
) -> None:
    """Move the instance to `to`, or refuse with 409 `invalid_transition` naming the action."""
    if not can_transition(instance.status, to):
        raise InvalidTransition(
            f"Cannot {action} instance {instance.id} while it is {instance.status}.",
            details={"status": instance.status, "action": action},
        )
    instance.status = to.value
    instance.status_reason = reason
    instance.updated_at = utcnow()
