"""The developer surface against a live platform: the Python SDK (sync and async), the
reference's Python and curl samples, and the `forkyard` client commands run as processes."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from forkyard_sdk import AsyncForkyard, Forkyard, errors

from forkyard.reference import samples
from forkyard.reference.schema import load, operations
from tests.compute.conftest import Platform, create_running

pytestmark = pytest.mark.sandbox


def api_key(platform: Platform) -> str:
    return str(platform.api.headers["Authorization"]).split()[1]


def sdk_flow(url: str, key: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with Forkyard(api_key=key, base_url=url) as fy:
        with fy.instances.create(memory_mb=256, disk_mb=256) as inst:
            seen["status"] = inst.status
            r = inst.exec("echo out; echo err >&2; exit 3")
            seen["exec"] = (r.exit_code, r.stdout, r.stderr)
            seen["stream"] = [(e.type, e.data) for e in inst.exec_stream("echo a; echo b")]
            inst.files.write("/root/notes.txt", "hello world\n")
            seen["edit"] = inst.files.edit("/root/notes.txt", "world", "there")["replaced"]
            seen["read"] = inst.files.read_text("/root/notes.txt")
            seen["list"] = [e["name"] for e in inst.files.list("/root")]
            cp = inst.checkpoint("before")
            inst.files.write("/root/notes.txt", "changed\n")
            inst.rollback(cp)
            seen["after_rollback"] = inst.files.read_text("/root/notes.txt")
            seen["checkpoints"] = [c["id"] for c in inst.checkpoints()]
            seen["cp"] = cp["id"]
            kids = inst.fork(2)
            seen["kids"] = [(k.status, k.files.read_text("/root/notes.txt")) for k in kids]
            seen["listed"] = {i.id for i in fy.instances.list()}
            seen["ids"] = {inst.id, *(k.id for k in kids)}
            for kid in kids:
                kid.delete()
            try:
                fy.api.instances.get_instance_route("inst_00000000000000000000000000")
            except errors.NotFound as exc:
                seen["not_found"] = (exc.code, exc.status)
        seen["deleted"] = fy.instances.get(inst.id).status
    return seen


async def test_the_python_sdk_sync_and_async(platform: Platform):
    key = api_key(platform)
    seen = await asyncio.to_thread(sdk_flow, platform.url, key)
    assert seen["status"] == "running"
    assert seen["exec"] == (3, "out\n", "err\n")
    types = [t for t, _ in seen["stream"]]
    assert types[0] == "start" and types[-1] == "exit" and seen["stream"][-1][1]["exit_code"] == 0
    assert "".join(d["data"] for t, d in seen["stream"] if t == "stdout") == "a\nb\n"
    assert seen["edit"] == 1 and seen["read"] == "hello there\n"
    assert "notes.txt" in seen["list"]
    assert seen["after_rollback"] == "hello there\n"
    assert seen["cp"] in seen["checkpoints"]
    assert seen["kids"] == [("running", "hello there\n")] * 2
    assert seen["ids"] <= seen["listed"]
    assert seen["not_found"] == ("not_found", 404)
    assert seen["deleted"] in ("deleting", "deleted")

    async with AsyncForkyard(api_key=key, base_url=platform.url) as fy:
        async with await fy.instances.create(memory_mb=256, disk_mb=256) as inst:
            assert (await inst.exec(["sh", "-c", "echo $((6*7))"])).stdout == "42\n"
            events = [e.type async for e in inst.exec_stream("true")]
            assert events[0] == "start" and events[-1] == "exit"
            await inst.files.write("/root/b.bin", b"\x00\xff")
            assert await inst.files.read("/root/b.bin") == b"\x00\xff"
            ids = [i.id async for i in fy.instances.list()]
            assert inst.id in ids
        with pytest.raises(errors.ForkyardError) as failed:
            await inst.exec("true")
        assert failed.value.code in ("instance_not_running", "not_found")


# Operations whose Python and curl samples run as printed (ids replaced by real ones).
SAMPLED = [
    "health-health",
    "instances-list_instances",
    "instances-get_instance_route",
    "exec-run_command",
    "files-write_file",
    "files-read_file",
    "files-edit_file",
    "files-list_files",
    "checkpoints-create_checkpoint",
    "checkpoints-list_checkpoints",
    "api_keys-list_api_keys",
    "base_images-list_base_images",
    "auth-get_me",
]


async def run(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_reference_samples_run_against_the_server(platform: Platform):
    spec = load()
    ops = {o.id: o for o in operations(spec)}
    inst = await create_running(platform.api)
    env = {
        **os.environ,
        "FORKYARD_API_KEY": api_key(platform),
        "FORKYARD_BASE_URL": platform.url,
    }
    # All curl samples, then all Python ones: each round writes the file its edit changes.
    for kind in ("curl", "python"):
        for op_id in SAMPLED:
            op = ops[op_id]
            code_text = samples.curl(op, spec) if kind == "curl" else samples.python(op, spec)
            for name, placeholder in samples.path_values(op).items():
                assert name == "id", op_id  # only instance ids in this set
                code_text = code_text.replace(placeholder, inst["id"])
            if kind == "python":
                code, out, err = await run(sys.executable, "-c", code_text, env=env)
                assert code == 0 and out.strip(), (op_id, code_text, err)
            else:
                code, out, err = await run(
                    "bash", "-c", code_text + " -o /dev/stderr -w '%{http_code}'", env=env
                )
                assert code == 0 and out.startswith("2"), (op_id, code_text, out, err)
    await platform.api.delete(f"/v1/instances/{inst['id']}")


@pytest.mark.timeout(400)
async def test_the_cli_client(platform: Platform, tmp_path: Path):
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_") and k != "HOME"}
    env = {**base, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    cli = [sys.executable, "-m", "forkyard.cli"]

    code, _, err = await run(*cli, "instances", "ls", env=env)
    assert code == 1 and err.strip().startswith("error: not_logged_in:"), err
    code, out, err = await run(
        *cli, "login", "--api-key", "fy_wrong", "--base-url", platform.url, env=env
    )
    assert code == 1 and "error: unauthenticated:" in err, err
    code, _, err = await run(
        *cli, "login", "--api-key", api_key(platform), "--base-url", platform.url, env=env
    )
    assert code == 0, err
    config = home / ".config" / "forkyard" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600

    code, out, err = await run(
        *cli, "instances", "create", "--memory", "256", "--disk", "256", "--json", env=env
    )
    assert code == 0, err
    inst = json.loads(out)
    assert inst["status"] == "running"
    iid = inst["id"]

    code, out, err = await run(
        *cli, "exec", iid, "--", "sh", "-c", "echo hi; echo oops >&2; exit 7", env=env
    )
    assert (code, out, err) == (7, "hi\n", "oops\n")

    local = tmp_path / "up.txt"
    local.write_text("uploaded\n")
    code, _, err = await run(*cli, "cp", str(local), f"{iid}:/root/up.txt", env=env)
    assert code == 0, err
    code, _, err = await run(*cli, "cp", f"{iid}:/root/up.txt", str(tmp_path / "down.txt"), env=env)
    assert code == 0 and (tmp_path / "down.txt").read_text() == "uploaded\n", err

    code, out, err = await run(*cli, "checkpoint", iid, "--json", env=env)
    assert code == 0, err
    ckpt = json.loads(out)["id"]
    await run(*cli, "exec", iid, "--", "rm /root/up.txt", env=env)
    code, out, err = await run(*cli, "rollback", iid, ckpt, "--json", env=env)
    assert code == 0 and json.loads(out)["rolled_back_to"] == ckpt, err
    code, out, _ = await run(*cli, "exec", iid, "--", "cat /root/up.txt", env=env)
    assert (code, out) == (0, "uploaded\n")

    code, out, err = await run(*cli, "fork", iid, "-n", "1", "--json", env=env)
    assert code == 0, err
    kid = json.loads(out)[0]["id"]

    for command in (["images"], ["keys"], ["instances", "get", iid]):
        code, out, err = await run(*cli, *command, "--json", env=env)
        assert code == 0 and json.loads(out), (command, err)

    # FORKYARD_BASE_URL wins over the saved login.
    code, _, err = await run(
        *cli, "instances", "ls", env={**env, "FORKYARD_BASE_URL": "http://127.0.0.1:9"}
    )
    assert code == 1 and "error: connection_error:" in err

    # On a terminal: a table.
    table = await asyncio.to_thread(pty_run, [*cli, "instances", "ls"], env)
    assert (iid in table and "running" in table and "│" in table) or "─" in table, table

    code, out, err = await run(*cli, "instances", "rm", iid, kid, "--json", env=env)
    assert code == 0 and {i["id"] for i in json.loads(out)} == {iid, kid}, err
    code, _, err = await run(*cli, "exec", iid, "--", "true", env=env)
    assert code == 1 and err.startswith("error: "), err


def pty_run(argv: list[str], env: dict[str, str]) -> str:
    """Run with a pseudo-terminal as stdout and stderr; what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, env={**env, "COLUMNS": "200"}, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")
