"""The synchronous client: `fy = Forkyard()`, `fy.instances.create(...)`, and an `Instance` to
run commands in, edit files of, checkpoint, roll back, fork and delete. Everything else of the
API is on `fy.api.<tag>.<operation>()` (generated from the snapshot), or `fy.request(...)`."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from forkyard_sdk import _generated as g
from forkyard_sdk import errors
from forkyard_sdk._transport import Config, Event, SyncCore

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


class Files:
    """An instance's files: write, read, edit (replace a unique string) and list."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._api = instance._fy.api.files

    def write(self, path: str, content: str | bytes, *, mode: int | None = None) -> g.FileEntry:
        return self._api.write_file(self._instance.id, write_body(path, content, mode))

    def read(self, path: str, *, offset: int | None = None, limit: int | None = None) -> bytes:
        return self._api.read_file(self._instance.id, path=path, offset=offset, limit=limit)

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def edit(
        self, path: str, old_str: str, new_str: str, *, replace_all: bool = False
    ) -> g.EditResultOut:
        body: g.FileEdit = {
            "path": path,
            "old_str": old_str,
            "new_str": new_str,
            "replace_all": replace_all,
        }
        return self._api.edit_file(self._instance.id, body)

    def list(self, path: str = "/", *, depth: int = 1) -> list[g.FileEntry]:
        return self._api.list_files(self._instance.id, path=path, depth=depth)["data"]


class Instance:
    """One instance. `data` is its last known state (`refresh()` reads it again); used as a
    context manager it is deleted on exit."""

    def __init__(self, fy: Forkyard, data: g.InstanceOut) -> None:
        self._fy = fy
        self.data = data
        self.files = Files(self)

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
        return f"<Instance {self.id} {self.status}>"

    def __enter__(self) -> Instance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def refresh(self) -> Instance:
        self.data = self._fy.api.instances.get_instance_route(self.id)
        return self

    def wait(self, status: str = "running", timeout: float = 300) -> Instance:
        """Poll until the instance reaches `status`; an instance in `error` raises."""
        deadline = time.monotonic() + timeout
        while self.refresh().status != status:
            if self.status == "error":
                raise errors.ForkyardError(
                    f"{self.id} failed: {self.data.get('status_reason')}", code="instance_error"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} is {self.status}, not {status}, after {timeout} s")
            time.sleep(WAIT_POLL_S)
        return self

    def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        """Run a command (a shell string, or an argv list) and wait for it to end."""
        body = exec_body(command, cwd, env, stdin, timeout_s)
        return ExecResult.parse(self._fy.api.exec.run_command(self.id, body))

    def exec_stream(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[Event]:
        """Events as the command runs: `start`, `stdout` / `stderr` ({"data": ...}), then
        `exit` ({"exit_code": ...}) or `error`."""
        body = exec_body(command, cwd, env, stdin, timeout_s)
        return self._fy.api.exec.stream_command(self.id, body)

    def checkpoint(self, name: str | None = None) -> g.CheckpointOut:
        body: g.CheckpointCreate = {} if name is None else {"name": name}
        return self._fy.api.checkpoints.create_checkpoint(self.id, body)

    def checkpoints(self) -> Iterator[g.CheckpointOut]:
        return self._fy.paginate(f"/v1/instances/{self.id}/checkpoints")

    def rollback(self, checkpoint: g.CheckpointOut | str) -> g.RollbackOut:
        """Put the filesystem back as it was at the checkpoint (processes restart)."""
        cp = checkpoint if isinstance(checkpoint, str) else checkpoint["id"]
        result = self._fy.api.checkpoints.rollback(self.id, {"checkpoint_id": cp})
        self.data = result["instance"]
        return result

    def fork(self, count: int = 1, *, name_prefix: str | None = None) -> list[Instance]:
        """`count` new instances with this one's filesystem as it is now, each running."""
        body: g.ForkRequest = {"count": count}
        if name_prefix is not None:
            body["name_prefix"] = name_prefix
        result = self._fy.api.instances.fork_instance(self.id, body)
        failed = [c["error"] for c in result["children"] if c.get("error")]
        kids = [
            Instance(self._fy, c["instance"])
            for c in result["children"]
            if c["instance"] is not None
        ]
        if failed and not kids:
            raise errors.ForkyardError(f"fork failed: {failed[0]}", code="fork_failed")
        return [k if k.status == "running" else k.wait() for k in kids]

    def update(self, **fields: Any) -> Instance:
        self.data = self._fy.api.instances.update_instance(self.id, fields)  # type: ignore[arg-type]
        return self

    def delete(self) -> None:
        """Delete the instance (already gone is fine)."""
        try:
            self.data = self._fy.api.instances.delete_instance(self.id)
        except errors.ForkyardError as exc:
            if exc.status != 404:
                raise


class Instances:
    def __init__(self, fy: Forkyard) -> None:
        self._fy = fy

    def create(self, *, wait: bool = True, **fields: Any) -> Instance:
        """Create an instance (fields of `InstanceCreate`: memory_mb, disk_mb, image, name,
        labels, env...). With `wait` (the default) it answers once the instance runs."""
        body: Any = fields
        inst = Instance(self._fy, self._fy.api.instances.create_instance_route(body, wait=wait))
        if wait and inst.status == "error":
            raise errors.ForkyardError(
                f"{inst.id} failed: {inst.data.get('status_reason')}", code="instance_error"
            )
        return inst

    def get(self, instance_id: str) -> Instance:
        return Instance(self._fy, self._fy.api.instances.get_instance_route(instance_id))

    def list(
        self, *, status: str | None = None, label: list[str] | None = None
    ) -> Iterator[Instance]:
        """Every instance of the org, newest first, across pages."""
        for item in self._fy.paginate("/v1/instances", status=status, label=label):
            yield Instance(self._fy, item)

    __iter__ = list


class Forkyard:
    """The Forkyard API. The key and URL come from the arguments, else FORKYARD_API_KEY and
    FORKYARD_BASE_URL (default http://127.0.0.1:8000)."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 3,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.config = Config.resolve(api_key, base_url, timeout, max_retries)
        self._core = SyncCore(self.config, http_client)
        self.api = g.Api(self._core)
        self.instances = Instances(self)

    def __enter__(self) -> Forkyard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._core.close()

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        """Any endpoint: the parsed JSON answer (bytes with `raw`), or the error's exception."""
        return self._core.request(
            method, path, json=json, params=params, kind="bytes" if raw else "json"
        )

    def stream(self, method: str, path: str, json: Any = None) -> Iterator[Event]:
        return self._core.stream(method, path, json=json)

    def paginate(self, path: str, **params: Any) -> Iterator[Any]:
        """Every item of a cursor list, fetching pages as the loop needs them."""
        cursor: str | None = None
        while True:
            page = self._core.request(
                "GET", path, params={**params, "cursor": cursor, "limit": 200}
            )
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
