"""The built TypeScript SDK against a live platform, run by node: create, exec and its stream,
files, checkpoint and rollback, fork, list, errors and delete (sdk/typescript/test/live.mjs)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.compute.conftest import Platform
from tests.sdk_typescript.conftest import SDK

pytestmark = pytest.mark.sandbox


async def run_node(script: Path, platform: Platform) -> dict[str, dict[str, Any]]:
    key = platform.api.headers["Authorization"].removeprefix("Bearer ")
    env = {**os.environ, "FORKYARD_API_KEY": key, "FORKYARD_BASE_URL": platform.url}
    # Not subprocess.run: the platform serves from this event loop.
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=100)
    assert proc.returncode == 0, err.decode() + out.decode()
    steps = [json.loads(line) for line in out.decode().splitlines()]
    return {s.pop("step"): s for s in steps}


@pytest.mark.timeout(180)
async def test_the_sdk_drives_an_instance(built_sdk: Path, platform: Platform) -> None:
    steps = await run_node(SDK / "test" / "live.mjs", platform)

    assert steps["create"]["status"] == "running"
    assert steps["create"]["id"].startswith("inst_")
    assert steps["exec"] == {"exit_code": 3, "stdout": "hello\n", "stderr": "oops\n", "ok": False}
    assert steps["stream"] == {
        "events": ["start", "stdout", "exit"],
        "stdout": "line1\nline2\nline3\n",
    }
    assert steps["stream_exit"] == {"exit_code": 0}
    assert steps["files"] == {
        "replaced": 1,
        "text": "version = 2\n",
        "blob": [0, 255, 1, 254],
        "names": ["app.txt", "blob.bin"],
    }
    assert steps["rollback"] == {
        "checkpoint": "before",
        "rolled_back_to": steps["rollback"]["rolled_back_to"],
        "matches": True,
        "text": "version = 2\n",
    }
    assert steps["checkpoints"] == {"reasons": ["before_rollback", "manual"]}
    assert steps["fork"] == {
        "count": 2,
        "statuses": ["running", "running"],
        "texts": ["version = 2\n", "version = 2\n"],
        "parent_after_child_write": "version = 2\n",
    }
    assert steps["generic"]["stdout"] == "raw\n"
    assert steps["generic"]["ssh_user"] == steps["create"]["id"]
    assert steps["generic"]["ssh_command"].endswith(f"{steps['create']['id']}@127.0.0.1")
    # limit=1 pages through all three (parent and two children) by next_cursor.
    assert steps["list"] == {"count": 3, "has_parent": True}
    assert steps["error"]["is_error"] is True
    assert steps["error"]["status"] == 404
    assert steps["delete"]["status"] == "deleting"
    assert steps["delete"]["get_unknown"] == {"code": "not_found", "not_found": True}

    r = await platform.api.get("/v1/instances")
    assert all(i["status"] in ("deleting", "deleted") for i in r.json()["data"])
