"""Each node has its own identity: the cluster token only lets a node join, and what it gets
back is a credential of its own. One node cannot heartbeat for another, nor take a live node's
name (and with it the control plane's traffic); a dead node's name can be taken by its
replacement. Node URLs may be https; the token need not sit on a command line."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from forkyard.compute.models import ComputeServer
from forkyard.kit.clock import utcnow
from tests.compute.conftest import IMAGE_CACHE, NODE_TOKEN, NodeProcess
from tests.helpers import error_code

JOIN = {"Authorization": f"Bearer {NODE_TOKEN}"}


def _registration(name: str, url: str = "http://127.0.0.1:9", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "secret": "s" * 32,
        "driver": "sandbox",
        "capacity": {
            "cpus": 2,
            "memory_mb": 1024,
            "disk_mb": 10000,
            "disk_free_mb": 5000,
            "slots": 10,
            "running_instances": 0,
        },
        **extra,
    }


def _beat() -> dict[str, Any]:
    return {"capacity": _registration("x")["capacity"], "instances": {}}


async def _register(cp: httpx.AsyncClient, name: str, **extra: Any) -> httpx.Response:
    return await cp.post(
        "/v1/internal/servers/register", json=_registration(name, **extra), headers=JOIN
    )


async def test_each_node_gets_its_own_credential_and_heartbeats_only_for_itself(control_plane):
    async with httpx.AsyncClient(base_url=control_plane) as cp:
        a = (await _register(cp, "node-a")).json()
        b = (await _register(cp, "node-b")).json()
        assert a["credential"] and b["credential"] and a["credential"] != b["credential"]

        def beat(server: str, credential: str) -> Any:
            return cp.post(
                f"/v1/internal/servers/{server}/heartbeat",
                json=_beat(),
                headers={"Authorization": f"Bearer {credential}"},
            )

        assert (await beat(a["server_id"], a["credential"])).status_code == 200
        # Node b speaking for node a, and the shared join token speaking for anyone: refused.
        for credential in (b["credential"], NODE_TOKEN):
            r = await beat(a["server_id"], credential)
            assert r.status_code == 401 and error_code(r) == "unauthenticated"


async def test_a_live_nodes_name_cannot_be_taken(control_plane, db):
    async with httpx.AsyncClient(base_url=control_plane) as cp:
        first = (await _register(cp, "victim", url="http://127.0.0.1:7001")).json()
        # Another holder of the join token registers the same name to draw its traffic.
        r = await _register(cp, "victim", url="http://10.66.6.6:7001")
        assert r.status_code == 409 and error_code(r) == "server_name_taken"
        r = await _register(cp, "victim", url="http://10.66.6.6:7001", credential="forged" * 5)
        assert r.status_code == 409
        async with db.sessions() as session:
            server = (
                await session.execute(select(ComputeServer).where(ComputeServer.name == "victim"))
            ).scalar_one()
        assert server.url == "http://127.0.0.1:7001"
        # The node itself, restarted, presents its credential and keeps its identity.
        again = await _register(
            cp, "victim", url="http://127.0.0.1:7002", credential=first["credential"]
        )
        assert again.status_code == 200
        assert (
            again.json()["server_id"] == first["server_id"] and again.json()["credential"] is None
        )


async def test_a_dead_nodes_name_goes_to_its_replacement(control_plane, db, compute_settings):
    async with httpx.AsyncClient(base_url=control_plane) as cp:
        old = (await _register(cp, "phoenix")).json()
        silent_since = utcnow() - timedelta(seconds=compute_settings.server_stale_after_s + 5)
        async with db.transaction() as session:
            await session.execute(
                update(ComputeServer)
                .where(ComputeServer.id == old["server_id"])
                .values(last_heartbeat_at=silent_since)
            )
        new = await _register(cp, "phoenix")
        assert new.status_code == 200 and new.json()["credential"] not in (None, old["credential"])
        r = await cp.post(
            f"/v1/internal/servers/{old['server_id']}/heartbeat",
            json=_beat(),
            headers={"Authorization": f"Bearer {old['credential']}"},
        )
        assert r.status_code == 401  # the old credential died with the takeover


async def test_node_urls_may_be_https_and_nothing_else(control_plane):
    async with httpx.AsyncClient(base_url=control_plane) as cp:
        assert (await _register(cp, "tls", url="https://node-3.example:8443")).status_code == 200
        for bad in ("ftp://node.example", "http://h/path?x=1", "file:///etc/passwd", "node:80"):
            r = await _register(cp, f"bad-{abs(hash(bad))}", url=bad)
            assert r.status_code == 422 and error_code(r) == "validation_failed", bad


async def test_the_node_keeps_its_credential_private(platform):
    path = platform.node.config.data_dir / "node-credential"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() != NODE_TOKEN


async def test_token_from_a_file_never_on_the_command_line(
    node_process: NodeProcess, db, tmp_path: Path
):
    token_file = tmp_path / "node-token"
    token_file.write_text(NODE_TOKEN + "\n")
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "FORKYARD_NODE_TOKEN"}
    env["FORKYARD_IMAGE_CACHE_DIR"] = str(IMAGE_CACHE)
    with open(node_process.log, "ab") as log:
        node_process.proc = subprocess.Popen(
            [*node_process.args, "--token-file", str(token_file)], env=env, stdout=log, stderr=log
        )
    name = node_process.args[node_process.args.index("--name") + 1]
    for _ in range(600):
        async with db.sessions() as session:
            found = (
                await session.execute(select(ComputeServer.id).where(ComputeServer.name == name))
            ).scalar_one_or_none()
        if found:
            break
        assert node_process.proc.poll() is None, node_process.log.read_text()[-2000:]
        await asyncio.sleep(0.2)
    assert found, "the node never registered"
    cmdline = Path(f"/proc/{node_process.proc.pid}/cmdline").read_bytes()
    assert NODE_TOKEN.encode() not in cmdline
