"""`forkyard forward ID PORT` run as a process against the platform: a port inside an instance on
a local port, each connection a tunnel through the API, with real clients on the local end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compute.conftest import Platform, create_running, signed_in
from tests.compute.test_port_forwards import _start

pytestmark = pytest.mark.sandbox

# Echoes what it reads until the client's end of data, then says so and closes: what comes
# back after the client's half-close shows that it reached the server as one.
ECHO_UNTIL_EOF = r"""
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.sendall(b"<eof seen>")
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


class Forwarding:
    """A running `forkyard forward`, and where it listens."""

    def __init__(self, proc: asyncio.subprocess.Process, where: dict[str, Any]) -> None:
        self.proc = proc
        self.where = where
        host, _, port = where["local"].rpartition(":")
        self.host, self.port = host, int(port)

    async def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = await asyncio.wait_for(self.proc.communicate(), 30)
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()


def _env(platform: Platform, home: Path, api: httpx.AsyncClient | None = None) -> dict[str, str]:
    key = str((api or platform.api).headers["Authorization"]).split()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_")}
    return {**base, "FORKYARD_API_KEY": key, "FORKYARD_BASE_URL": platform.url,
            "XDG_CONFIG_HOME": str(home)}  # fmt: skip


async def _forward(env: dict[str, str], *args: str) -> Forwarding:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "forkyard.cli", "forward", *args, "--local-port", "0", "--json",
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        _, err = await proc.communicate()
        raise AssertionError(f"forkyard forward ended: {err.decode()}")
    return Forwarding(proc, json.loads(line))


async def _echo_through(fwd: Forwarding, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(-1), 30)
    writer.close()
    return got


async def _ports(platform: Platform, iid: str) -> dict[int, dict[str, Any]]:
    r = await platform.api.get(f"/v1/instances/{iid}/port-forwards")
    assert r.status_code == 200, r.text
    return {f["port"]: f for f in r.json()["data"]}


@pytest.mark.timeout(300)
async def test_forkyard_forward_reaches_a_port_inside_the_instance(
    platform: Platform, compute_settings: Any, run_jobs: Any, tmp_path: Path
) -> None:
    iid = (await create_running(platform.api))["id"]
    await _start(platform.api, iid, ECHO_UNTIL_EOF, "echo.py", 7000)
    env = _env(platform, tmp_path / "config")

    # No forward of the port yet: the command makes a TCP one, and deletes it when stopped.
    fwd = await _forward(env, iid, "7000")
    made = (await _ports(platform, iid))[7000]
    assert made["protocol"] == "tcp" and fwd.where["forward_id"] == made["id"]
    big = os.urandom(3 << 20)  # several tunnel messages each way
    got = await asyncio.gather(*(_echo_through(fwd, p) for p in (b"hello", big, b"")))
    assert got == [b"hello<eof seen>", big + b"<eof seen>", b"<eof seen>"]
    code, err = await fwd.stop(signal.SIGINT)
    assert code == 0, err
    assert 7000 not in await _ports(platform, iid)

    # The instance's own forward of a port is used, and kept.
    r = await platform.api.post(f"/v1/instances/{iid}/port-forwards", json={"port": 8000})
    assert r.status_code == 201, r.text
    await platform.api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "mkdir -p /srv/site && echo page > /srv/site/index.txt && cd /srv/site"
              " && setsid python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &"},
    )  # fmt: skip
    fwd = await _forward(env, iid, "8000")
    assert fwd.where["forward_id"] == r.json()["id"]
    async with httpx.AsyncClient(base_url=f"http://{fwd.host}:{fwd.port}") as local:
        for _ in range(100):  # until http.server listens
            try:
                page = await local.get("/index.txt")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        assert (page.status_code, page.text) == (200, "page\n")
    code, err = await fwd.stop(signal.SIGTERM)
    assert code == 0, err
    assert 8000 in await _ports(platform, iid)

    # Nothing listening inside: the local connection is closed, and the command says why.
    fwd = await _forward(env, iid, "7999")
    assert await _echo_through(fwd, b"anyone?") == b""
    code, err = await fwd.stop()
    assert code == 0 and "nothing listens on the port" in err, err

    # Another org's instance is the API's 404, as one line, and nothing listens locally.
    other, other_browser, _ = await signed_in(
        platform.url, "other@example.com", compute_settings, run_jobs
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "forkyard.cli", "forward", iid, "7000", "--local-port", "0",
        env=_env(platform, tmp_path / "other", other), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and out == b"", out
    assert err_bytes.decode().startswith("error: not_found:"), err_bytes
    assert 7000 not in await _ports(platform, iid)
    await other.aclose()
    await other_browser.aclose()
    await platform.api.delete(f"/v1/instances/{iid}")
