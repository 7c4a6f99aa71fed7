"""`forkyard ssh ID` run as a process: it asks the API how to reach the instance, pins the
gateway's host key from that answer, and execs OpenSSH against a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from forkyard.config import Settings
from forkyard.db.engine import Database
from forkyard.ssh.gateway import SshGateway
from tests.compute.conftest import Platform, create_running

pytestmark = pytest.mark.sandbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def compute_settings(compute_settings: Settings) -> Settings:
    """The control plane's, with a gateway port fixed up front: the API states this port, and
    the gateways below listen on it."""
    return compute_settings.model_copy(
        update={"ssh_port": _free_port(), "ssh_listen_host": "127.0.0.1"}
    )


@pytest.fixture
async def start_gateway(compute_settings: Settings, db: Database) -> AsyncIterator[Any]:
    started: list[SshGateway] = []

    async def start(data_dir: Path | None = None) -> SshGateway:
        settings = compute_settings
        if data_dir is not None:  # another host key than the one the API states
            settings = settings.model_copy(update={"data_dir": data_dir})
        gw = SshGateway(settings, db)
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        await gw.close()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "forkyard.cli",
        *args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(300)
async def test_forkyard_ssh_pins_the_gateway_key_and_runs_ssh(
    platform: Platform, start_gateway: Any, tmp_path: Path
) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    r = await platform.browser.post(
        "/v1/account/ssh-keys",
        json={"name": "cli", "public_key": key.with_suffix(".pub").read_text()},
    )
    assert r.status_code == 201, r.text
    inst = await create_running(platform.api)
    iid = inst["id"]
    access = (await platform.api.get(f"/v1/instances/{iid}/ssh")).json()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_")},
        "FORKYARD_API_KEY": str(platform.api.headers["Authorization"]).split()[1],
        "FORKYARD_BASE_URL": platform.url,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    known_hosts = tmp_path / "config" / "forkyard" / "known_hosts"

    # An impostor on the gateway's address (its own host key): ssh refuses it, where trusting
    # the first key seen would have signed in (it knows the account's keys like the real one).
    impostor = await start_gateway(tmp_path / "impostor")
    assert impostor.port == access["port"]
    code, out, err = await cli("ssh", "-i", str(key), iid, "--", "echo reached", env=env)
    assert code == 255 and "reached" not in out, (code, out, err)
    assert "Host key verification failed" in err or "HOST IDENTIFICATION HAS CHANGED" in err, err
    assert known_hosts.read_text() == access["known_hosts_line"] + "\n"
    await impostor.close()

    # The real gateway: the command's output and exit status come through.
    await start_gateway()
    code, out, err = await cli("ssh", "-i", str(key), iid, "--", "echo hello; exit 3", env=env)
    assert (code, out) == (3, "hello\n"), err
    code, out, _ = await cli("ssh", "-i", str(key), iid, "--", "uname", "-s", env=env)
    assert (code, out) == (0, "Linux\n")

    # --print and --json show the command without running it.
    code, out, err = await cli("ssh", "--print", iid, "--", "uname -a", env=env)
    assert code == 0, err
    line = out.strip()
    assert line.startswith(f"ssh -p {access['port']} ") and "StrictHostKeyChecking=yes" in line
    assert line.endswith(f"{iid}@{access['host']} 'uname -a'"), line
    code, out, _ = await cli("ssh", "--json", iid, env=env)
    shown = json.loads(out)
    assert code == 0 and shown["host_key_fingerprint"] == access["host_key_fingerprint"]
    assert shown["argv"][-1] == f"{iid}@{access['host']}"

    # Another org's instance (or none) is the API's 404, as one line.
    code, _, err = await cli("ssh", "--print", "inst_00000000000000000000000000", env=env)
    assert code == 1 and err.startswith("error: not_found:"), err
    await platform.api.delete(f"/v1/instances/{iid}")
