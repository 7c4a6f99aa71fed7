"""The asynchronous client: the same shape as `forkyard_sdk.Forkyard`, awaited.

async with AsyncForkyard() as fy:
    async with await fy.instances.create(memory_mb=512) as inst:
        print((await inst.exec("uname -a")).stdout)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
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
from forkyard_sdk._transport import AsyncCore, Config, Event


class AsyncFiles:
    def __init__(self, instance: AsyncInstance) -> None:
        self._instance = instance
        self._api = instance._fy.api.files

    async def write(
        self, path: str, content: str | bytes, *, mode: int | None = None
    ) -> g.FileEntry:
        return await self._api.write_file(self._instance.id, write_body(path, content, mode))

    async def read(
        self, path: str, *, offset: int | None = None, limit: int | None = None
    ) -> bytes:
        return await self._api.read_file(self._instance.id, path=path, offset=offset, limit=limit)

    async def read_text(self, path: str) -> str:
        return (await self.read(path)).decode()

    async def edit(
        self, path: str, old_str: str, new_str: str, *, replace_all: bool = False
    ) -> g.EditResultOut:
        body = edit_body(path, old_str, new_str, replace_all)
        return await self._api.edit_file(self._instance.id, body)

    async def list(self, path: str = "/", *, depth: int = 1) -> list[g.FileEntry]:
        return (await self._api.list_files(self._instance.id, path=path, depth=depth))["data"]


class AsyncInstance(InstanceState):
    def __init__(self, fy: AsyncForkyard, data: g.InstanceOut) -> None:
        self._fy = fy
        self.data = data
        self.files = AsyncFiles(self)

    async def __aenter__(self) -> AsyncInstance:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.delete()

    async def refresh(self) -> AsyncInstance:
        self.data = await self._fy.api.instances.get_instance_route(self.id)
        return self

    async def wait(self, status: str = "running", timeout: float = 300) -> AsyncInstance:
        deadline = time.monotonic() + timeout
        while not (await self.refresh()).reached(status, deadline, timeout):  # noqa: ASYNC110 (polls the API)
            await asyncio.sleep(WAIT_POLL_S)
        return self

    async def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        body = exec_body(command, cwd, env, stdin, timeout_s)
        return ExecResult.parse(await self._fy.api.exec.run_command(self.id, body))

    def exec_stream(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[Event]:
        body = exec_body(command, cwd, env, stdin, timeout_s)
        return self._fy.api.exec.stream_command(self.id, body)

    async def checkpoint(self, name: str | None = None) -> g.CheckpointOut:
        return await self._fy.api.checkpoints.create_checkpoint(self.id, checkpoint_body(name))

    def checkpoints(self) -> AsyncIterator[g.CheckpointOut]:
        return self._fy.paginate(f"/v1/instances/{self.id}/checkpoints")

    async def rollback(self, checkpoint: g.CheckpointOut | str) -> g.RollbackOut:
        result = await self._fy.api.checkpoints.rollback(self.id, rollback_body(checkpoint))
        self.data = result["instance"]
        return result

    async def fork(self, count: int = 1, *, name_prefix: str | None = None) -> list[AsyncInstance]:
        body = fork_body(count, name_prefix)
        result = await self._fy.api.instances.fork_instance(self.id, body)
        kids = [AsyncInstance(self._fy, data) for data in forked(result)]
        return [k if k.status == "running" else await k.wait() for k in kids]

    async def ssh_access(self) -> g.SshAccessOut:
        return await self._fy.api.ssh.ssh_access(self.id)

    async def update(self, **fields: Any) -> AsyncInstance:
        self.data = await self._fy.api.instances.update_instance(self.id, fields)  # type: ignore[arg-type]
        return self

    async def delete(self) -> None:
        try:
            self.data = await self._fy.api.instances.delete_instance(self.id)
        except errors.ForkyardError as exc:
            if exc.status != 404:
                raise


class AsyncInstances:
    def __init__(self, fy: AsyncForkyard) -> None:
        self._fy = fy

    async def create(self, *, wait: bool = True, **fields: Any) -> AsyncInstance:
        body: Any = fields
        data = await self._fy.api.instances.create_instance_route(body, wait=wait)
        inst = AsyncInstance(self._fy, data)
        if wait:
            inst.check_booted()
        return inst

    async def get(self, instance_id: str) -> AsyncInstance:
        return AsyncInstance(self._fy, await self._fy.api.instances.get_instance_route(instance_id))

    async def list(
        self, *, status: str | None = None, label: list[str] | None = None
    ) -> AsyncIterator[AsyncInstance]:
        async for item in self._fy.paginate("/v1/instances", status=status, label=label):
            yield AsyncInstance(self._fy, item)


class AsyncForkyard:
    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 3,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = Config.resolve(api_key, base_url, timeout, max_retries)
        self._core = AsyncCore(self.config, http_client)
        self.api = g.AsyncApi(self._core)
        self.instances = AsyncInstances(self)

    async def __aenter__(self) -> AsyncForkyard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._core.close()

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: dict[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        return await self._core.request(
            method, path, json=json, params=params, kind="bytes" if raw else "json"
        )

    def stream(self, method: str, path: str, json: Any = None) -> AsyncIterator[Event]:
        return self._core.stream(method, path, json=json)

    async def paginate(self, path: str, **params: Any) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page = await self._core.request("GET", path, params=page_params(params, cursor))
            for item in page["data"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return
