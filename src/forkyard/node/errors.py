"""Errors raised by the node layer, on the platform's one error base class."""

from __future__ import annotations

from forkyard.guest import protocol as p
from forkyard.kit.errors import ForkyardError


class NodeError(ForkyardError):
    status_code = 500
    code = "node_error"
    message = "The compute node failed."


class AgentUnavailable(NodeError):
    """The guest agent did not answer: not started, crashed, hung, or the instance was stopped."""

    status_code = 503
    code = "agent_unavailable"
    message = "The instance's agent is not answering."


class AgentOperationError(NodeError):
    """The agent refused or failed an operation; `code` is the protocol's error code."""

    _STATUS = {
        p.E_NOT_FOUND: 404,
        p.E_EXISTS: 409,
        p.E_NOT_EMPTY: 409,
        p.E_NOT_A_DIRECTORY: 400,
        p.E_IS_A_DIRECTORY: 400,
        p.E_INVALID: 400,
        p.E_SPAWN: 400,
        p.E_PERMISSION: 403,
        p.E_NO_SPACE: 507,
        p.E_NOT_REGULAR: 400,
        p.E_TOO_LARGE: 400,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status_code = self._STATUS.get(code, 500)


class InstanceNotFound(NodeError):
    status_code = 404
    code = "instance_not_found"
    message = "No such instance on this node."


class InstanceNotRunning(NodeError):
    status_code = 409
    code = "instance_not_running"
    message = "The instance is not running."


class SandboxFailed(NodeError):
    """Setting up or tearing down an instance failed (mount, cgroup, bwrap)."""

    code = "sandbox_failed"
    message = "The sandbox could not be set up."
