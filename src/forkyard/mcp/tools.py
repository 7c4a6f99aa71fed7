"""The tools and what a model is told about them. Each is a call of the public API; `ApiFactory`
says how to reach it (over the network with a key, or in-process with the caller's)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import httpx
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field

ApiFactory = Callable[[Context], AbstractAsyncContextManager[httpx.AsyncClient]]

INSTRUCTIONS = """\
Forkyard gives you isolated Linux machines ("instances": Debian with bash, python3, git and curl;
no network access from inside). A typical task: create_instance, then write_file / exec /
read_file / edit_file to do the work, checkpoint before a risky step and rollback if it goes
wrong, fork to try several approaches in parallel from the same state, and delete_instance when
done (instances hold resources until deleted). Every tool but create_instance takes the
instance_id it returned. Files outside /tmp survive checkpoints; processes do not survive a
rollback."""

InstanceId = Annotated[str, Field(description="The instance's id, `inst_...`.")]
Path = Annotated[str, Field(description="Absolute path inside the instance, e.g. /work/app.py.")]


def _error(response: httpx.Response) -> ToolError:
    try:
        err = response.json()["error"]
        return ToolError(f"{err['code']}: {err['message']}")
    except (ValueError, KeyError, TypeError):
        return ToolError(f"HTTP {response.status_code}: {response.text[:500]}")


async def _call(api: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = await api.request(method, path, **kwargs)
    if response.status_code >= 400:
        raise _error(response)
    return response


def _instance(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "status", "status_reason", "image", "vcpus", "memory_mb", "disk_mb")
    return {k: data.get(k) for k in keys}


def build_server(api_for: ApiFactory) -> FastMCP:
    """A server with every tool, each reaching the API through `api_for(ctx)`."""
    mcp = FastMCP("forkyard", instructions=INSTRUCTIONS)

    @mcp.tool()
    async def create_instance(
        ctx: Context,
        memory_mb: Annotated[int, Field(ge=64, description="Memory in MiB.")] = 512,
        disk_mb: Annotated[int | None, Field(ge=64, description="Disk in MiB.")] = None,
        name: Annotated[str | None, Field(description="A name to recognise it by.")] = None,
        image: Annotated[str | None, Field(description="Image name; default `default`.")] = None,
    ) -> dict[str, Any]:
        """Create a new isolated Linux instance and wait until it is running (a few seconds).
        Returns its `id`, which every other tool takes. Delete it with delete_instance when
        the task is done."""
        body: dict[str, Any] = {"memory_mb": memory_mb, "disk_mb": disk_mb, "name": name}
        if image:
            body["image"] = image
        async with api_for(ctx) as api:
            r = await _call(api, "POST", "/v1/instances", params={"wait": "true"}, json=body)
        data = r.json()
        if data["status"] != "running":
            raise ToolError(f"instance {data['id']} is {data['status']}: {data['status_reason']}")
        return _instance(data)

    @mcp.tool()
    async def list_instances(ctx: Context) -> list[dict[str, Any]]:
        """The instances that exist now (newest first, up to 200): id, name and status. Use it
        to find an instance created earlier."""
        async with api_for(ctx) as api:
            r = await _call(api, "GET", "/v1/instances", params={"limit": 200})
        return [_instance(i) for i in r.json()["data"]]

    @mcp.tool()
    async def exec(
        ctx: Context,
        instance_id: InstanceId,
        command: Annotated[
            str, Field(description="A shell command line, run by /bin/sh -c (pipes, &&, cd work).")
        ],
        cwd: Annotated[str | None, Field(description="Working directory.")] = None,
        stdin: Annotated[str | None, Field(description="Text fed to standard input.")] = None,
        timeout_s: Annotated[
            float | None, Field(gt=0, le=3600, description="Kill the command after this long.")
        ] = None,
    ) -> dict[str, Any]:
        """Run a shell command in the instance and wait for it to finish. Returns exit_code,
        stdout and stderr (each capped; `truncated` says so), and `timed_out`. A non-zero
        exit_code is a result, not a tool error: read stderr. Each call is a fresh shell, so
        `cd` does not carry over: pass `cwd` or chain with &&."""
        body: dict[str, Any] = {"command": command, "cwd": cwd, "stdin": stdin}
        body["timeout_s"] = timeout_s
        async with api_for(ctx) as api:
            r = await _call(api, "POST", f"/v1/instances/{instance_id}/exec", json=body)
        res = r.json()
        out, err = res["stdout"], res["stderr"]
        if res.get("encoding") == "base64":
            out = base64.b64decode(out).decode("utf-8", "replace")
            err = base64.b64decode(err).decode("utf-8", "replace")
        return {
            "exit_code": res["exit_code"],
            "stdout": out,
            "stderr": err,
            "timed_out": res["timed_out"],
            "truncated": res["truncated"],
        }

    @mcp.tool()
    async def read_file(
        ctx: Context,
        instance_id: InstanceId,
        path: Path,
        offset: Annotated[int, Field(ge=0, description="Start at this byte.")] = 0,
        limit: Annotated[
            int | None, Field(ge=0, description="Read at most this many bytes.")
        ] = None,
    ) -> str:
        """Read a file's text. Binary content comes back base64-encoded, prefixed `base64:`.
        For large files read a window with offset and limit."""
        params: dict[str, Any] = {"path": path, "offset": offset}
        if limit is not None:
            params["limit"] = limit
        async with api_for(ctx) as api:
            r = await _call(api, "GET", f"/v1/instances/{instance_id}/files", params=params)
        try:
            return r.content.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(r.content).decode()

    @mcp.tool()
    async def write_file(
        ctx: Context,
        instance_id: InstanceId,
        path: Path,
        content: Annotated[str, Field(description="The whole new content (UTF-8 text).")],
    ) -> dict[str, Any]:
        """Create or overwrite a file with the given text; missing parent directories are
        made. To change part of an existing file prefer edit_file."""
        body = {"path": path, "content": content, "make_parents": True}
        async with api_for(ctx) as api:
            r = await _call(api, "POST", f"/v1/instances/{instance_id}/files", json=body)
        entry = r.json()
        return {"path": entry["path"], "size": entry["size"]}

    @mcp.tool()
    async def edit_file(
        ctx: Context,
        instance_id: InstanceId,
        path: Path,
        old_str: Annotated[
            str,
            Field(description="Exact text to replace, whitespace included; it must occur once."),
        ],
        new_str: Annotated[str, Field(description="The text to put in its place.")],
        replace_all: Annotated[
            bool, Field(description="Replace every occurrence instead of exactly one.")
        ] = False,
    ) -> dict[str, Any]:
        """Replace a unique piece of text in a file. Fails when old_str is not found or occurs
        more than once (unless replace_all): include enough surrounding lines to make it unique."""
        body = {"path": path, "old_str": old_str, "new_str": new_str, "replace_all": replace_all}
        async with api_for(ctx) as api:
            r = await _call(api, "POST", f"/v1/instances/{instance_id}/files/edit", json=body)
        result: dict[str, Any] = r.json()
        return result

    @mcp.tool()
    async def list_files(
        ctx: Context,
        instance_id: InstanceId,
        path: Annotated[str, Field(description="Directory to list.")] = "/",
        depth: Annotated[int, Field(ge=1, le=10, description="How many levels down.")] = 1,
    ) -> list[dict[str, Any]]:
        """List a directory: each entry's path, type (file, dir, symlink) and size."""
        params = {"path": path, "depth": depth}
        async with api_for(ctx) as api:
            r = await _call(api, "GET", f"/v1/instances/{instance_id}/files/list", params=params)
        return [{k: e[k] for k in ("path", "type", "size")} for e in r.json()["data"]]

    @mcp.tool()
    async def checkpoint(
        ctx: Context,
        instance_id: InstanceId,
        name: Annotated[str | None, Field(description="A label, e.g. `before-upgrade`.")] = None,
    ) -> dict[str, Any]:
        """Save the instance's filesystem as a checkpoint (fast, copy-on-write). Take one before
        a risky change; rollback returns to it. Returns the checkpoint's `id` (`ckpt_...`)."""
        async with api_for(ctx) as api:
            r = await _call(
                api, "POST", f"/v1/instances/{instance_id}/checkpoints", json={"name": name}
            )
        cp = r.json()
        return {"id": cp["id"], "name": cp["name"], "created_at": cp["created_at"]}

    @mcp.tool()
    async def rollback(
        ctx: Context,
        instance_id: InstanceId,
        checkpoint_id: Annotated[str, Field(description="The `ckpt_...` id checkpoint returned.")],
    ) -> dict[str, Any]:
        """Return the instance's filesystem to a checkpoint, discarding every change since.
        Running processes are restarted. The state just before is kept as a checkpoint too
        (`undo_checkpoint_id`), so a rollback can itself be undone."""
        async with api_for(ctx) as api:
            r = await _call(
                api,
                "POST",
                f"/v1/instances/{instance_id}/rollback",
                json={"checkpoint_id": checkpoint_id},
            )
        out = r.json()
        return {
            "rolled_back_to": out["rolled_back_to"],
            "undo_checkpoint_id": out["checkpoint"]["id"],
            "status": out["instance"]["status"],
        }

    @mcp.tool()
    async def fork(
        ctx: Context,
        instance_id: InstanceId,
        count: Annotated[int, Field(ge=1, le=50, description="How many copies.")] = 1,
    ) -> dict[str, Any]:
        """Make `count` new running instances, each a copy of this one's filesystem as it is
        now. Use it to try several approaches in parallel from one prepared state; each copy
        is independent and must be deleted on its own."""
        async with api_for(ctx) as api:
            r = await _call(
                api,
                "POST",
                f"/v1/instances/{instance_id}/fork",
                params={"wait": "true"},
                json={"count": count},
            )
        children = r.json()["children"]
        return {
            "instances": [_instance(c["instance"]) for c in children if c.get("instance")],
            "errors": [c["error"] for c in children if c.get("error")],
        }

    @mcp.tool()
    async def delete_instance(ctx: Context, instance_id: InstanceId) -> dict[str, Any]:
        """Delete an instance with its files and checkpoints. This cannot be undone."""
        async with api_for(ctx) as api:
            r = await _call(api, "DELETE", f"/v1/instances/{instance_id}")
        return _instance(r.json())

    return mcp
