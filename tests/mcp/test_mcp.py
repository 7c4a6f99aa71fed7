"""The MCP server through the official SDK's client, against a live platform: a small task end
to end over stdio (`forkyard mcp` as a subprocess) and over streamable HTTP at /mcp."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from mcp import ClientSession, StdioServerParameters
from tests.compute.conftest import Platform, signed_in

pytestmark = pytest.mark.sandbox

TOOLS = {
    "create_instance",
    "list_instances",
    "exec",
    "read_file",
    "write_file",
    "edit_file",
    "list_files",
    "checkpoint",
    "rollback",
    "fork",
    "delete_instance",
}
FORKYARD = Path(sys.executable).parent / "forkyard"


def key_of(api: httpx.AsyncClient) -> str:
    return api.headers["Authorization"].removeprefix("Bearer ")


@contextlib.asynccontextmanager
async def http_session(url: str, key: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await session.call_tool(tool, arguments)
    text = "".join(c.text for c in result.content if isinstance(c, TextContent))
    assert not result.isError, f"{tool}: {text}"
    if result.structuredContent is not None:
        content = result.structuredContent
        # FastMCP wraps a result that is not an object in {"result": ...}.
        return content["result"] if set(content) == {"result"} else content
    return text


async def failing(session: ClientSession, tool: str, **arguments: Any) -> str:
    result: CallToolResult = await session.call_tool(tool, arguments)
    assert result.isError, result
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def small_task(session: ClientSession, platform: Platform) -> None:
    """What an assistant asked to fix a failing script would do."""
    await session.initialize()
    tools = (await session.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    assert all(t.description and len(t.description) > 60 for t in tools)

    inst = await call(session, "create_instance", memory_mb=256, disk_mb=256, name="mcp")
    assert inst["status"] == "running"
    iid = inst["id"]
    await call(
        session, "write_file", instance_id=iid, path="/work/add.py", content="print(2 - 3)\n"
    )
    run = await call(session, "exec", instance_id=iid, command="python3 add.py", cwd="/work")
    assert run == {
        "exit_code": 0,
        "stdout": "-1\n",
        "stderr": "",
        "timed_out": False,
        "truncated": False,
    }
    cp = await call(session, "checkpoint", instance_id=iid, name="before-fix")
    assert cp["id"].startswith("ckpt_")
    edit = await call(
        session, "edit_file", instance_id=iid, path="/work/add.py", old_str="-", new_str="+"
    )
    assert edit["replaced"] == 1
    assert await call(session, "read_file", instance_id=iid, path="/work/add.py") == (
        "print(2 + 3)\n"
    )
    run = await call(session, "exec", instance_id=iid, command="python3 /work/add.py; exit 4")
    assert (run["exit_code"], run["stdout"]) == (4, "5\n")
    assert "not found" in (
        await failing(
            session, "edit_file", instance_id=iid, path="/work/add.py", old_str="zz", new_str="y"
        )
    ).lower().replace("_", " ")

    forked = await call(session, "fork", instance_id=iid, count=2)
    kids = [k["id"] for k in forked["instances"]]
    assert len(kids) == 2 and forked["errors"] == []
    assert {k["status"] for k in forked["instances"]} == {"running"}
    back = await call(session, "rollback", instance_id=iid, checkpoint_id=cp["id"])
    assert back["rolled_back_to"] == cp["id"]
    assert await call(session, "read_file", instance_id=iid, path="/work/add.py") == (
        "print(2 - 3)\n"
    )
    # The fork was taken after the fix: its copy keeps it.
    assert await call(session, "read_file", instance_id=kids[0], path="/work/add.py") == (
        "print(2 + 3)\n"
    )
    listing = await call(session, "list_files", instance_id=iid, path="/work")
    assert {"path": "/work/add.py", "type": "file", "size": 13} in listing
    listed = {i["id"] for i in await call(session, "list_instances")}
    assert {iid, *kids} <= listed

    for one in (iid, *kids):
        gone = await call(session, "delete_instance", instance_id=one)
        assert gone["status"] == "deleting"
    assert "not_found" in await failing(session, "exec", instance_id="inst_nope", command="true")


@pytest.mark.timeout(240)
async def test_stdio_a_small_task(platform: Platform) -> None:
    params = StdioServerParameters(
        command=str(FORKYARD),
        args=["mcp"],
        env={
            **os.environ,
            "FORKYARD_API_KEY": key_of(platform.api),
            "FORKYARD_BASE_URL": platform.url,
        },
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await small_task(session, platform)


@pytest.mark.timeout(240)
async def test_http_a_small_task(platform: Platform) -> None:
    async with http_session(platform.url, key_of(platform.api)) as session:
        await small_task(session, platform)


@pytest.mark.timeout(120)
async def test_http_needs_a_key_and_stays_in_its_org(
    platform: Platform, compute_settings: Any, run_jobs: Any
) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=platform.url) as anon:
        r = await anon.post("/mcp", json=init, headers=accept)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
        r = await anon.post("/mcp", json=init, headers={**accept, "Authorization": "Bearer fy_x"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"

    r = await platform.api.post("/v1/instances", json={"memory_mb": 256, "disk_mb": 256})
    theirs = r.json()["id"]
    other_api, other_browser, _ = await signed_in(
        platform.url, "other@example.com", compute_settings, run_jobs
    )
    try:
        async with http_session(platform.url, key_of(other_api)) as session:
            await session.initialize()
            for tool, args in [
                ("exec", {"command": "true"}),
                ("read_file", {"path": "/etc/hostname"}),
                ("delete_instance", {}),
            ]:
                text = await failing(session, tool, instance_id=theirs, **args)
                assert "not_found:" in text, text
            assert theirs not in {i["id"] for i in await call(session, "list_instances")}
    finally:
        await other_api.aclose()
        await other_browser.aclose()
    assert (await platform.api.get(f"/v1/instances/{theirs}")).json()["status"] != "deleting"
    await platform.api.delete(f"/v1/instances/{theirs}")


def test_stdio_without_a_key_says_so() -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "FORKYARD_API_KEY"}
    r = subprocess.run([str(FORKYARD), "mcp"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "FORKYARD_API_KEY" in r.stderr
    json.dumps(r.stdout)  # nothing but MCP would ever be on stdout: here nothing at all
    assert r.stdout == ""
