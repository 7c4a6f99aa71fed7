"""The SSH gateway, web terminals and file watching, with real clients: OpenSSH's ssh, scp and
sftp against the gateway; a websocket client on the terminal; an SSE reader on the watch."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from forkyard.config import Settings
from forkyard.db.engine import Database, libpq_url
from forkyard.ssh.gateway import SshGateway
from forkyard.ssh.hostkey import public_line
from tests.compute.conftest import Platform, create_running, signed_in, wait_status

pytestmark = pytest.mark.sandbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ssh:
    port: int
    key: Path
    known_hosts: Path

    def options(self, key: Path | None = None) -> list[str]:
        return [
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "LogLevel=ERROR",
            "-i", str(key or self.key),
        ]  # fmt: skip

    async def run(
        self, argv: list[str], stdin: bytes | None = None, timeout: float = 60
    ) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def ssh(
        self, target: str, *args: str, stdin: bytes | None = None, key: Path | None = None
    ) -> tuple[int, bytes, bytes]:
        argv = ["ssh", "-p", str(self.port), *self.options(key), f"{target}@127.0.0.1", *args]
        return await self.run(argv, stdin)


def _keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text()


@pytest.fixture
async def gateway(compute_settings: Settings, db: Database) -> AsyncIterator[SshGateway]:
    settings = compute_settings.model_copy(
        update={"ssh_port": _free_port(), "ssh_listen_host": "127.0.0.1"}
    )
    gw = SshGateway(settings, db)
    await gw.start()
    yield gw
    await gw.close()


async def test_ssh_terminal_and_watch(
    platform: Platform,
    gateway: SshGateway,
    tmp_path: Path,
    compute_settings: Settings,
    run_jobs: Any,
    db: Database,
) -> None:
    # The account's key, and a known_hosts line for the gateway's host key.
    pub = _keypair(tmp_path / "id_ed25519")
    r = await platform.browser.post("/v1/account/ssh-keys", json={"name": "t", "public_key": pub})
    assert r.status_code == 201, r.text
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{gateway.port} {public_line(gateway.host_key)}\n")
    ssh = Ssh(gateway.port, tmp_path / "id_ed25519", known)

    inst = await create_running(platform.api)
    iid = inst["id"]

    # How to reach it.
    r = await platform.api.get(f"/v1/instances/{iid}/ssh")
    assert r.status_code == 200, r.text
    access = r.json()
    assert access["username"] == iid
    assert access["host_key_fingerprint"] == gateway.host_key.get_fingerprint("sha256")
    assert access["command"].startswith("ssh -p ")

    # A command: its output, its exit status, its stdin.
    rc, out, err = await ssh.ssh(iid, "echo hello; exit 3")
    assert (rc, out) == (3, b"hello\n"), err
    rc, out, _ = await ssh.ssh(iid, "tr a-z A-Z", stdin=b"piped input\n")
    assert (rc, out) == (0, b"PIPED INPUT\n")
    rc, _, err = await ssh.ssh(iid, "echo oops >&2; false")
    assert rc == 1 and err == b"oops\n"

    # A terminal: TERM and the size the client asked for.
    rc, out, _ = await ssh.run(
        ["ssh", "-tt", "-p", str(ssh.port), *ssh.options(), f"{iid}@127.0.0.1",
         "echo $TERM; stty size; test -t 0 && echo tty"],
    )  # fmt: skip
    assert rc == 0, out
    text = out.decode().replace("\r", "")
    assert text.split("\n")[:3] == [os.environ.get("TERM", "dumb"), "24 80", "tty"] or (
        "tty" in text
    ), text

    # scp and sftp, both ways.
    local = tmp_path / "up.bin"
    local.write_bytes(bytes(range(256)) * 400)
    scp = ["scp", "-P", str(ssh.port), *ssh.options()]
    rc, _, err = await ssh.run([*scp, str(local), f"{iid}@127.0.0.1:/root/up.bin"])
    assert rc == 0, err
    rc, out, _ = await ssh.ssh(iid, "sha256sum /root/up.bin")
    assert rc == 0
    import hashlib

    assert out.split()[0].decode() == hashlib.sha256(local.read_bytes()).hexdigest()
    back = tmp_path / "down.bin"
    rc, _, err = await ssh.run([*scp, f"{iid}@127.0.0.1:/root/up.bin", str(back)])
    assert rc == 0, err
    assert back.read_bytes() == local.read_bytes()
    batch = tmp_path / "batch"
    batch.write_text("mkdir /root/sdir\nput " + str(local) + " /root/sdir/x\nls -l /root/sdir\n")
    rc, out, err = await ssh.run(
        ["sftp", "-P", str(ssh.port), *ssh.options(), "-b", str(batch), f"{iid}@127.0.0.1"]
    )
    assert rc == 0, err
    assert b"x" in out

    # ssh -L to a port inside the instance.
    server = await platform.api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "cd /root && (nohup python3 -m http.server 8765 >/dev/null 2>&1 &)"},
    )
    assert server.status_code == 200, server.text
    local_port = _free_port()
    forward = await asyncio.create_subprocess_exec(
        "ssh", "-N", "-L", f"{local_port}:localhost:8765", "-p", str(ssh.port), *ssh.options(),
        f"{iid}@127.0.0.1",
    )  # fmt: skip
    try:
        body = b""
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    got = await client.get(f"http://127.0.0.1:{local_port}/up.bin")
                    if got.status_code == 200:
                        body = got.content
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        assert body == local.read_bytes()
    finally:
        forward.terminate()
        await forward.wait()

    # Denied alike: another org's user's key, an unknown instance, an unregistered key.
    _, other_browser, _ = await signed_in(
        platform.url, "other@example.com", compute_settings, run_jobs
    )
    other_pub = _keypair(tmp_path / "other")
    r = await other_browser.post(
        "/v1/account/ssh-keys", json={"name": "o", "public_key": other_pub}
    )
    assert r.status_code == 201
    await other_browser.aclose()
    stranger = tmp_path / "stranger"
    _keypair(stranger)
    refusals = [
        await ssh.ssh(iid, "true", key=tmp_path / "other"),
        await ssh.ssh("inst_00000000000000000000000000", "true"),
        await ssh.ssh(iid, "true", key=stranger),
    ]
    for rc, _, err in refusals:
        assert rc == 255 and b"Permission denied" in err, err

    # Sign-ins are cached (ssh/access.py `sign_ins`), and every change to who may sign in
    # reaches the very next connection: made by an operator's SQL (only the database's
    # announcement can tell the gateway), or through the API.
    from forkyard.ssh.access import sign_ins

    assert sign_ins.get(iid) is not None  # the refusals above were answered from it
    async with await psycopg.AsyncConnection.connect(libpq_url(db.url), autocommit=True) as sql:
        other_id = (
            await (
                await sql.execute("SELECT id FROM users WHERE email = 'other@example.com'")
            ).fetchone()
        )[0]
        await sql.execute(
            "INSERT INTO memberships (id, org_id, user_id, role, created_at)"
            " VALUES ('mem_sshtest0000000000000000000', %s, %s, 'member', now())",
            (platform.org_id, other_id),
        )
        rc, out, err = await ssh.ssh(iid, "echo in", key=tmp_path / "other")
        assert (rc, out) == (0, b"in\n"), err
        assert sign_ins.get(iid) is not None
        await sql.execute("UPDATE memberships SET role = 'viewer' WHERE user_id = %s", (other_id,))
        rc, _, err = await ssh.ssh(iid, "true", key=tmp_path / "other")
        assert rc == 255 and b"Permission denied" in err, err
        await sql.execute("UPDATE memberships SET role = 'member' WHERE user_id = %s", (other_id,))
        assert (await ssh.ssh(iid, "true", key=tmp_path / "other"))[0] == 0
        await sql.execute("DELETE FROM memberships WHERE user_id = %s", (other_id,))
        rc, _, err = await ssh.ssh(iid, "true", key=tmp_path / "other")
        assert rc == 255 and b"Permission denied" in err, err
    # The account's own key, removed through the API, then added again.
    assert (await ssh.ssh(iid, "true"))[0] == 0
    keys = (await platform.browser.get("/v1/account/ssh-keys")).json()["data"]
    for key_row in keys:
        r = await platform.browser.delete(f"/v1/account/ssh-keys/{key_row['id']}")
        assert r.status_code == 204, r.text
    rc, _, err = await ssh.ssh(iid, "true")
    assert rc == 255 and b"Permission denied" in err, err
    r = await platform.browser.post("/v1/account/ssh-keys", json={"name": "t", "public_key": pub})
    assert r.status_code == 201, r.text
    assert (await ssh.ssh(iid, "true"))[0] == 0

    # A web terminal: ready, input, output, resize, exit.
    key = platform.api.headers["authorization"]
    ws_url = platform.url.replace("http", "ws") + f"/v1/instances/{iid}/terminal?cols=100&rows=30"
    async with websockets.connect(ws_url, additional_headers={"Authorization": key}) as term:
        assert json.loads(await term.recv()) == {"type": "ready"}
        await term.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
        await term.send(json.dumps({"type": "input", "data": "stty size; exit 7\r"}))
        seen, end = await _until_exit(term)
        assert b"43 132" in seen, seen
        assert end == {"type": "exit", "exit_code": 7}
    # No credentials: refused before any shell starts.
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url):
            pass

    # File watching: created, modified, moved, deleted, with the instance's own paths.
    await platform.api.post(f"/v1/instances/{iid}/exec", json={"command": "mkdir -p /root/w"})
    events: list[tuple[str, dict[str, Any]]] = []
    async with platform.api.stream(
        "GET", f"/v1/instances/{iid}/files/watch", params={"path": "/root/w", "recursive": "true"}
    ) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        kind = ""
        changed = False
        async for line in lines:
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "ready" and not changed:
                    changed = True
                    cmd = "cd /root/w && echo a > f && echo b >> f && mv f g && rm g"
                    r = await platform.api.post(f"/v1/instances/{iid}/exec", json={"command": cmd})
                    assert r.status_code == 200
                if kind == "deleted":
                    break
    kinds = [k for k, _ in events]
    assert kinds[0] == "ready"
    assert "created" in kinds and "modified" in kinds and "moved" in kinds
    moved = next(d for k, d in events if k == "moved")
    assert moved["from"] == "/root/w/f" and moved["path"] == "/root/w/g"
    assert events[-1] == ("deleted", {"path": "/root/w/g", "is_dir": False})

    # A watch of a missing directory is an error answer, not a stream.
    r = await platform.api.get(f"/v1/instances/{iid}/files/watch", params={"path": "/nope"})
    assert r.status_code == 404

    # A session ends when its instance stops.
    proc = await asyncio.create_subprocess_exec(
        "ssh", "-p", str(ssh.port), *ssh.options(), f"{iid}@127.0.0.1", "sleep 300",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.0)
    r = await platform.api.delete(f"/v1/instances/{iid}")
    assert r.status_code in (200, 202, 204), r.text
    rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc != 0


async def _until_exit(term: Any) -> tuple[bytes, dict[str, Any]]:
    """A web terminal's output up to its first text message (the shell's exit, or an error)."""
    seen = b""
    async for message in term:
        if isinstance(message, bytes):
            seen += message
        else:
            return seen, json.loads(message)
    return seen, {}


async def _account_key(platform: Platform, tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    pub = _keypair(key)
    r = await platform.browser.post("/v1/account/ssh-keys", json={"name": "t", "public_key": pub})
    assert r.status_code == 201, r.text
    return key


async def test_sftp_requests(
    platform: Platform, gateway: SshGateway, tmp_path: Path, db: Database
) -> None:
    """SFTP through asyncssh's client: what an open for reading refuses (missing, a directory)
    and lets through (a FIFO, whose reads are then refused); and the requests of a session,
    the first included, find the instance's node from the connection's sign-in, not the
    database (ADR 0014)."""
    import asyncssh
    from sqlalchemy import event

    key = await _account_key(platform, tmp_path)
    iid = (await create_running(platform.api))["id"]
    r = await platform.api.post(
        f"/v1/instances/{iid}/exec",
        json={"command": "mkdir -p /root/d && printf hi > /root/d/f && mkfifo /root/d/p"},
    )
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text

    # Statements that could find where the instance runs: any read of compute_servers.
    lookups: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "compute_servers" in statement:
            lookups.append(statement)

    async with asyncssh.connect(
        "127.0.0.1", gateway.port, username=iid, client_keys=[str(key)], known_hosts=None,
        agent_path=None, password=None,
    ) as conn:  # fmt: skip
        event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            for _ in range(2):  # a session per command, as scp and sftp open them
                async with conn.start_sftp_client() as sftp:
                    attrs = await sftp.stat("/root/d/f")
                    assert attrs.size == 2 and attrs.permissions is not None
                    assert attrs.permissions & 0o170000 == 0o100000
                    async with sftp.open("/root/d/f", "rb") as f:
                        assert await f.read(2) == b"hi"
                    async with sftp.open("/root/d/g", "wb") as f:
                        await f.write(b"written")
                    async with sftp.open("/root/d/g", "rb") as f:
                        assert await f.read(7) == b"written"
                    with pytest.raises(asyncssh.SFTPNoSuchFile):
                        await sftp.open("/root/d/missing", "rb")
                    with pytest.raises(asyncssh.SFTPFailure, match="is a directory"):
                        await sftp.open("/root/d", "rb")
                    fifo = await sftp.open("/root/d/p", "rb")
                    with pytest.raises(asyncssh.SFTPFailure):
                        await fifo.read(1)
                    await fifo.close()
                    assert sorted(await sftp.listdir("/root/d")) == ["f", "g", "p"]
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        assert lookups == []

        # A session opened after the instance stopped is refused, however it learns of it
        # (the triggers empty the sign-in's entry; the watchdog ends the connection).
        r = await platform.api.delete(f"/v1/instances/{iid}/vm")
        assert r.status_code in (200, 202), r.text
        await wait_status(platform.api, iid, "stopped")
        with pytest.raises((asyncssh.Error, OSError)):
            async with conn.start_sftp_client() as sftp:
                await sftp.stat("/root/d/f")


async def test_sftp_writes_go_to_the_file_in_parts(
    platform: Platform, compute_settings: Settings, db: Database, tmp_path: Path
) -> None:
    """SFTP writes reach the file as they come, in bounded runs at their offsets (sftp.py
    WRITE_RUN), not as one buffered file: a file far larger than the upload limit arrives whole,
    writes into an existing file keep the rest of it, a gap reads as zeros, a handle reads
    back what it wrote, an append goes to the end, and an exclusive create of an existing file
    is refused with the file left as it was."""
    import asyncssh

    from forkyard.ssh.sftp import WRITE_RUN

    settings = compute_settings.model_copy(
        update={
            "ssh_port": _free_port(),
            "ssh_listen_host": "127.0.0.1",
            "max_upload_body_bytes": 1024 * 1024,
        }
    )
    gateway = SshGateway(settings, db)
    await gateway.start()
    key = await _account_key(platform, tmp_path)
    iid = (await create_running(platform.api))["id"]
    big = hashlib.sha256(b"seed").digest() * ((2 * WRITE_RUN + 12345) // 32)
    try:
        async with asyncssh.connect(
            "127.0.0.1", gateway.port, username=iid, client_keys=[str(key)],
            known_hosts=None, agent_path=None, password=None,
        ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
            async with sftp.open("/root/big", "wb") as f:
                await f.write(big)
            r = await platform.api.post(
                f"/v1/instances/{iid}/exec", json={"command": "sha256sum /root/big"}
            )
            assert r.json()["stdout"].split()[0] == hashlib.sha256(big).hexdigest(), r.text
            async with sftp.open("/root/big", "rb") as f:
                assert await f.read() == big

            async with sftp.open("/root/small", "wb") as f:
                await f.write(b"0123456789")
            async with sftp.open("/root/small", "r+b") as f:
                await f.write(b"AB", 2)
                await f.write(b"Z", 14)
                assert await f.read(4, 0) == b"01AB"
                assert (await f.stat()).size == 15
            async with sftp.open("/root/small", "ab") as f:
                await f.write(b"end", 0)
            async with sftp.open("/root/small", "rb") as f:
                assert await f.read() == b"01AB456789\0\0\0\0Zend"
            async with sftp.open("/root/empty", "wb", asyncssh.SFTPAttrs(permissions=0o600)):
                pass
            attrs = await sftp.stat("/root/empty")
            assert (attrs.size, attrs.permissions & 0o777) == (0, 0o600)
            with pytest.raises(asyncssh.SFTPError, match="file exists"):  # (v3: no own code)
                await sftp.open("/root/small", "xb")
            assert (await sftp.stat("/root/small")).size == 18

        # A client gone with a file still open (a killed scp): what it wrote is in the file,
        # as sshd's server leaves it.
        async with asyncssh.connect(
            "127.0.0.1", gateway.port, username=iid, client_keys=[str(key)],
            known_hosts=None, agent_path=None, password=None,
        ) as conn:  # fmt: skip
            sftp = await conn.start_sftp_client()
            f = await sftp.open("/root/cut", "wb")
            await f.write(b"written before the cut")
        for _ in range(100):
            r = await platform.api.get(f"/v1/instances/{iid}/files", params={"path": "/root/cut"})
            if r.status_code == 200 and r.content:
                break
            await asyncio.sleep(0.05)
        assert r.content == b"written before the cut", r.text
    finally:
        await gateway.close()
        await platform.api.delete(f"/v1/instances/{iid}")


async def test_several_web_terminals_at_once(platform: Platform) -> None:
    """More terminals at once than the node keeps warm WebSockets for (warm.py
    SESSIONS_PER_NODE), each its own shell."""
    from forkyard.compute.node_client.warm import SESSIONS_PER_NODE

    iid = (await create_running(platform.api))["id"]
    key = platform.api.headers["authorization"]
    url = platform.url.replace("http", "ws") + f"/v1/instances/{iid}/terminal"
    count = SESSIONS_PER_NODE + 2
    async with contextlib.AsyncExitStack() as stack:
        terms = [
            await stack.enter_async_context(
                websockets.connect(url, additional_headers={"Authorization": key})
            )
            for _ in range(count)
        ]
        for term in terms:
            assert json.loads(await term.recv()) == {"type": "ready"}
        for n, term in enumerate(terms):
            await term.send(json.dumps({"type": "input", "data": f"echo shell-$$-{n}; exit {n}\r"}))
        shells = set()
        for n, term in enumerate(terms):
            seen, end = await _until_exit(term)
            assert end == {"type": "exit", "exit_code": n}, seen
            found = re.search(rb"shell-(\d+)-" + str(n).encode() + rb"\r?\n", seen)
            assert found, seen
            shells.add(found.group(1))
        assert len(shells) == count  # each its own shell


def test_prompt_acks_reach_the_reads_under_uvloop() -> None:
    """The gateway acknowledges each segment at once (`_ack_promptly`, ADR 0014) by hooking
    the connection's reads. `forkyard serve` runs on uvloop, which looks the read method up
    once per transport: the hook must still see the reads there, or every `ssh` sign-in
    stalls twice on the client's delayed ACKs (~40 ms each)."""
    import asyncssh
    import uvloop

    from forkyard.ssh.gateway import _ack_promptly

    seen: list[int] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            received = conn.data_received

            def counted(data: bytes, datatype: Any = None) -> None:
                seen.append(len(data))
                received(data, datatype)

            conn.data_received = counted  # type: ignore[method-assign]
            _ack_promptly(conn)

        def begin_auth(self, username: str) -> bool:
            return True  # and no method will do: the reads of the key exchange are enough

    async def main() -> None:
        key = asyncssh.generate_private_key("ssh-ed25519")
        server = await asyncssh.listen(
            "127.0.0.1", 0, server_factory=Server, server_host_keys=[key]
        )
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", port, username="x", known_hosts=None, client_keys=None,
                agent_path=None, password=None, preferred_auth="publickey",
            )  # fmt: skip
        server.close()
        await server.wait_closed()

    uvloop.run(main())
    assert seen, "the hook saw no read"
