"""What the sync client (client.py) and the async one (aio.py) have in common: the bodies they
send, the answers they parse, an instance's state and its checks. Only their I/O differs, so
each method there is the call and, around it, one of these."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from forkyard_sdk import _generated as g
from forkyard_sdk import errors

WAIT_POLL_S = 0.05


@dataclass(frozen=True)
class ExecResult:
    """What a finished command left: `exit_code`, `stdout`, `stderr` (text), and the rest."""

    exit_code: int
    stdout: str
    stderr: str
    exec_id: str
    duration_ms: float
    timed_out: bool
    truncated: bool
    signal: int | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @classmethod
    def parse(cls, body: g.ExecResultOut) -> ExecResult:
        out, err = body["stdout"], body["stderr"]
        if body.get("encoding") == "base64":
            out = base64.b64decode(out).decode("utf-8", "replace")
            err = base64.b64decode(err).decode("utf-8", "replace")
        return cls(
            exit_code=body["exit_code"],
            stdout=out,
            stderr=err,
            exec_id=body["exec_id"],
            duration_ms=body["duration_ms"],
            timed_out=body["timed_out"],
            truncated=body["truncated"],
            signal=body.get("signal"),
        )


def exec_body(
    command: str | list[str],
    cwd: str | None,
    env: dict[str, str] | None,
    stdin: str | None,
    timeout_s: float | None,
) -> g.ExecRequest:
    body: g.ExecRequest = {"command": command}
    if cwd is not None:
        body["cwd"] = cwd
    if env is not None:
        body["env"] = env
    if stdin is not None:
        body["stdin"] = stdin
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    return body


def write_body(path: str, content: str | bytes, mode: int | None) -> g.FileWrite:
    if isinstance(content, bytes):
        body: g.FileWrite = {
            "path": path,
            "content": base64.b64encode(content).decode(),
            "encoding": "base64",
        }
    else:
        body = {"path": path, "content": content}
    if mode is not None:
        body["mode"] = mode
    return body


def edit_body(path: str, old_str: str, new_str: str, replace_all: bool) -> g.FileEdit:
    return {"path": path, "old_str": old_str, "new_str": new_str, "replace_all": replace_all}


def checkpoint_body(name: str | None) -> g.CheckpointCreate:
    return {} if name is None else {"name": name}


def rollback_body(checkpoint: g.CheckpointOut | str) -> g.RollbackRequest:
    return {"checkpoint_id": checkpoint if isinstance(checkpoint, str) else checkpoint["id"]}


def fork_body(count: int, name_prefix: str | None) -> g.ForkRequest:
    body: g.ForkRequest = {"count": count}
    if name_prefix is not None:
        body["name_prefix"] = name_prefix
    return body


def forked(result: g.ForkOut) -> list[g.InstanceOut]:
    """The children a fork made; an error when it made none."""
    kids = [c["instance"] for c in result["children"] if c["instance"] is not None]
    failed = [c["error"] for c in result["children"] if c.get("error")]
    if failed and not kids:
        raise errors.ForkyardError(f"fork failed: {failed[0]}", code="fork_failed")
    return kids


def page_params(params: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    return {**params, "cursor": cursor, "limit": 200}


class InstanceState:
    """An instance's last known state (`data`), as Instance and AsyncInstance both hold it."""

    data: g.InstanceOut

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def status(self) -> str:
        return self.data["status"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"

    def check_booted(self) -> None:
        """An instance that answered `error` where it should run is an exception."""
        if self.status == "error":
            raise errors.ForkyardError(
                f"{self.id} failed: {self.data.get('status_reason')}", code="instance_error"
            )

    def reached(self, status: str, deadline: float, timeout: float) -> bool:
        """After a refresh: whether it is in `status` now; `error` or the deadline raise."""
        if self.status == status:
            return True
        self.check_booted()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.id} is {self.status}, not {status}, after {timeout} s")
        return False
