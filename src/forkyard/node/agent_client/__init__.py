"""Async client for the guest agent: one stream, many concurrent calls multiplexed on channels
(client.py), over the framing in channel.py; what calls answer is in results.py, and the calls
that stream (a file read, a running command) in streams.py."""

from forkyard.node.agent_client.channel import (
    MAX_QUEUED_CONTROL_FRAMES,
    READ_IDLE_TIMEOUT_S,
    _Call,
    _check,
    _Frames,
    short_socket_path,
)
from forkyard.node.agent_client.client import AgentClient, _exec_request
from forkyard.node.agent_client.results import (
    AGENT_GRACE_S,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_READ,
    PING_TIMEOUT_S,
    Command,
    EditResult,
    ExecEvent,
    ExecResult,
    FileInfo,
)
from forkyard.node.agent_client.streams import ExecStream, FileReader

__all__ = [
    "AGENT_GRACE_S",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_READ",
    "MAX_QUEUED_CONTROL_FRAMES",
    "PING_TIMEOUT_S",
    "READ_IDLE_TIMEOUT_S",
    "AgentClient",
    "Command",
    "EditResult",
    "ExecEvent",
    "ExecResult",
    "ExecStream",
    "FileInfo",
    "FileReader",
    "_Call",
    "_Frames",
    "_check",
    "_exec_request",
    "short_socket_path",
]
