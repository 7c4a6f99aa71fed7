"""What the guest agent answers, as the node sees it: exec results and events, file facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024
DEFAULT_MAX_READ = 64 * 1024 * 1024  # a whole file read into memory at most
# A call with a timeout gets this much extra before the client asks whether the agent is alive.
AGENT_GRACE_S = 5.0
PING_TIMEOUT_S = 2.0

Command = str | Sequence[str]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    duration_ms: float
    signal: int | None = None


@dataclass(frozen=True)
class ExecEvent:
    type: Literal["start", "stdout", "stderr", "exit"]
    data: bytes = b""
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float | None = None


@dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    target: str | None = None

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> FileInfo:
        return cls(
            name=d["name"],
            path=d["path"],
            type=d["type"],
            size=d["size"],
            mode=d["mode"],
            mtime=d["mtime"],
            target=d.get("target"),
        )


@dataclass(frozen=True)
class EditResult:
    """count: occurrences of old_str found; replaced: how many were replaced (0 = unchanged)."""

    count: int
    replaced: int

    @property
    def applied(self) -> bool:
        return self.replaced > 0
