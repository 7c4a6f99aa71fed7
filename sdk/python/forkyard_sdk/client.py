"""The synchronous client: `fy = Forkyard()`, `fy.instances.create(...)`, and an `Instance` to
run commands in, edit files of, checkpoint, roll back, fork and delete. Everything else of the
API is on `fy.api.<tag>.<operation>()` (generated from the snapshot), or `fy.request(...)`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from forkyard_sdk import _generated as g
from forkyard_sdk import errors
from forkyard_sdk._shared import (
    WAIT_POLL_S,
    ExecResult,
    InstanceState,
    checkpoint_body,
    edit_body,
    exec_body,
    fork_body,
    forked,
    page_params,
    rollback_body,
    write_body,
)
from forkyard_sdk._transport import Config, Event, SyncCore

__all__ = ["ExecResult", "Files", "Forkyard", "Instance", "Instances"]


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
        return self._api.edit_file(
            self._instance.id, edit_body(path, old_str, new_str, replace_all)
        )

    def list(self, path: str = "/", *, depth: int = 1) -> list[g.FileEntry]:
        return self._api.list_files(self._instance.id, path=path, depth=depth)["data"]


class Instance(InstanceState):
    """One instance. `data` is its last known state (`refresh()` reads it again); used as a
    context manager it is deleted on exit."""

    def __init__(self, fy: Forkyard, data: g.InstanceOut) -> None:
        self._fy = fy
        self.data = data
        self.files = Files(self)

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
        while not self.refresh().reached(status, deadline, timeout):
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
        return self._fy.api.checkpoints.create_checkpoint(self.id, checkpoint_body(name))

    def checkpoints(self) -> Iterator[g.CheckpointOut]:
        return self._fy.paginate(f"/v1/instances/{self.id}/checkpoints")

    def rollback(self, checkpoint: g.CheckpointOut | str) -> g.RollbackOut:
        """Put the filesystem back as it was at the checkpoint (processes restart)."""
        result = self._fy.api.checkpoints.rollback(self.id, rollback_body(checkpoint))
        self.data = result["instance"]
        return result

    def fork(self, count: int = 1, *, name_prefix: str | None = None) -> list[Instance]:
        """`count` new instances with this one's filesystem as it is now, each running."""
        result = self._fy.api.instances.fork_instance(self.id, fork_body(count, name_prefix))
        kids = [Instance(self._fy, data) for data in forked(result)]
        return [k if k.status == "running" else k.wait() for k in kids]

    def ssh_access(self) -> g.SshAccessOut:
        """How to ssh in with one of your account's keys: host, port, the command, and the
        gateway's host key (`forkyard ssh ID` pins it and runs ssh)."""
        return self._fy.api.ssh.ssh_access(self.id)

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
        if wait:
            inst.check_booted()
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
            page = self._core.request("GET", path, params=page_params(params, cursor))
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
