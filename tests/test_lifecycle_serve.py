"""`forkyard serve` as an operator runs it, as real processes: SIGTERM, `kill -9` of its node and
of serve itself, and two installations on one host. What a stopped installation may leave on the
host: nothing but its data dir (no process, mount, loop device or cgroup of its prefix)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from forkyard.node.drivers.sandbox import ROOTS_DIR
from forkyard.node.installation import installation_id, lock_holder
from tests.conftest import TEMPLATE, _admin_url

pytestmark = pytest.mark.sandbox

FORKYARD = [sys.executable, "-m", "forkyard.cli"]
PASSWORD = "lifecycle-password-long-enough-1"
IMAGE_CACHE = os.environ.get("FORKYARD_IMAGE_CACHE", "/var/cache/forkyard/images")
CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


def roots_dir(node_dir: Path) -> Path:
    """Where the sandbox driver mounts its instances' roots (outside the data dir)."""
    return ROOTS_DIR / hashlib.sha256(str(node_dir.resolve()).encode()).hexdigest()[:16]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """One installation: a data dir, a port, and `forkyard serve` started and stopped at will."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.node_dir = data_dir / "node"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_")}
        env.update(
            FORKYARD_LOG_JSON="false",
            FORKYARD_PUBLIC_URL=self.url,
            FORKYARD_IMAGE_CACHE_DIR=IMAGE_CACHE,
            FORKYARD_SERVER_STALE_AFTER_S="30",
            FORKYARD_SSH_PORT="0",  # installations on one host each need their own SSH port
        )
        if database_url:
            env["FORKYARD_DATABASE_URL"] = database_url
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{data_dir.name}.log"

    def start(self, *args: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *FORKYARD,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.tail()
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def node_pid(self) -> int | None:
        holder = lock_holder(self.node_dir)
        return int(holder["pid"]) if holder and holder.get("pid") else None

    def prefix(self) -> str:
        return f"forkyard-{installation_id(self.node_dir)}"

    def api(self, email: str) -> httpx.Client:
        """A verified user made with `forkyard admin create-user`, signed in, with an API key."""
        r = subprocess.run(
            [
                *FORKYARD,
                "admin",
                "create-user",
                "--email",
                email,
                "--password",
                PASSWORD,
                "--data-dir",
                str(self.data_dir),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        with httpx.Client(base_url=self.url, headers={"Origin": self.url}, timeout=30) as c:
            assert c.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).is_success
            key = c.post("/v1/api-keys", json={"name": "k"}).json()["key"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def leftovers(self) -> list[str]:
        """Everything of this installation on the host besides its data dir's files."""
        root = str(self.data_dir.resolve())
        roots = [root, str(roots_dir(self.node_dir))]
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
                except OSError:
                    continue
                if root in cmdline and state != "Z":
                    found.append(f"process {proc.name}: {cmdline[:120]}")
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                if any(mp == r or mp.startswith(r + "/") for r in roots):
                    found.append(f"mount {mp}")
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            try:
                if backing.read_text().strip().startswith(root + "/"):
                    found.append(f"loop {backing.parent.parent.name}")
            except OSError:
                continue
        for c in CONTROLLERS:
            if (Path("/sys/fs/cgroup") / c / self.prefix()).exists():
                found.append(f"cgroup {c}/{self.prefix()}")
        if (self.data_dir / "pg" / "postmaster.pid").exists():
            found.append("embedded PostgreSQL")
        return found

    def force_clean(self) -> None:
        """After a failed test: stop whatever is left, the way the node itself would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if pid := self.node_pid():
            from forkyard.runtime import end_node

            end_node(self.node_dir, pid)


def create_running(api: httpx.Client, timeout: float = 120) -> str:
    """An instance, created once the local node has registered, answering exec."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.post("/v1/instances", json={"memory_mb": 128, "disk_mb": 256})
        if r.status_code == 202:
            iid = str(r.json()["id"])
            break
        assert r.status_code == 503, r.text  # no_capacity until the node has registered
        assert time.monotonic() < deadline, "the local node never registered"
        time.sleep(0.2)
    wait_exec(api, iid, "true", timeout=deadline - time.monotonic())
    return iid


def run(api: httpx.Client, iid: str, command: str) -> dict[str, Any]:
    r = api.post(f"/v1/instances/{iid}/exec", json={"command": command})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_exec(api: httpx.Client, iid: str, command: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until `command` runs in the instance; returns its result. Statuses seen meanwhile
    are not judged here: callers check the end state."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.post(f"/v1/instances/{iid}/exec", json={"command": command})
        if r.status_code == 200:
            out: dict[str, Any] = r.json()
            return out
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)


def status(api: httpx.Client, iid: str) -> tuple[str, str | None]:
    body = api.get(f"/v1/instances/{iid}").json()
    return body["status"], body["status_reason"]


@pytest.fixture
def fresh_database(pg_server_url: str, template_url: str) -> Iterator[str]:
    """A database of its own (not the per-test one: two installations need two)."""
    name = f"forkyard_lc_{os.getpid()}_{time.monotonic_ns()}"
    admin = _admin_url(pg_server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield _admin_url(pg_server_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def installations(tmp_path: Path) -> Iterator[list[Serve]]:
    made: list[Serve] = []
    yield made
    for serve in made:
        serve.force_clean()


@pytest.mark.timeout(300)
def test_two_installations_share_a_host_and_sigterm_leaves_nothing(
    tmp_path, installations, fresh_database, database_url
):
    a = Serve(tmp_path / "a", database_url)
    b = Serve(tmp_path / "b", fresh_database)
    installations += [a, b]
    a.start()
    api_a = a.api("a@example.com")
    ia = create_running(api_a)
    run(api_a, ia, "echo a > /tmp/alive")  # /tmp is a tmpfs: gone if the sandbox ever restarts
    b.start()
    api_b = b.api("b@example.com")
    ib = create_running(api_b)
    assert a.prefix() != b.prefix()
    assert (Path("/sys/fs/cgroup/pids") / a.prefix() / ia).is_dir()
    assert (Path("/sys/fs/cgroup/pids") / b.prefix() / ib).is_dir()

    node_b = b.node_pid()
    assert b.stop(signal.SIGTERM) == 0, b.tail()
    assert b.leftovers() == []
    assert node_b is not None and not Path(f"/proc/{node_b}").exists()

    time.sleep(6)  # past a heartbeat and a reconcile of A's node: nothing of B touched A
    assert run(api_a, ia, "cat /tmp/alive")["stdout"] == "a\n"
    assert status(api_a, ia) == ("running", None)
    assert a.stop(signal.SIGTERM) == 0, a.tail()
    assert a.leftovers() == []
    api_a.close()
    api_b.close()


@pytest.mark.timeout(300)
def test_killed_node_is_restarted_and_its_instances_run_again(
    tmp_path, installations, database_url
):
    serve = Serve(tmp_path / "data", database_url)
    installations.append(serve)
    serve.start()
    api = serve.api("n@example.com")
    iids = [create_running(api) for _ in range(3)]
    run(api, iids[0], "echo kept > /root/f.txt && sync")
    first = serve.node_pid()
    assert first is not None

    os.kill(first, signal.SIGKILL)
    t0 = time.monotonic()
    for iid in iids:
        wait_exec(api, iid, "true", timeout=90)
    took = time.monotonic() - t0
    print(f"node death to exec in all {len(iids)} instances: {took:.1f} s")
    second = serve.node_pid()
    assert second is not None and second != first
    assert run(api, iids[0], "cat /root/f.txt")["stdout"] == "kept\n"
    time.sleep(6)  # past a heartbeat: the node reports them running, nobody marks them error
    assert [status(api, iid) for iid in iids] == [("running", None)] * len(iids)

    # a second node on the same data dir refuses to start while this one holds it
    r = subprocess.run(
        [
            *FORKYARD,
            "node",
            "--control-plane",
            serve.url,
            "--token",
            "x",
            "--data-dir",
            str(serve.node_dir),
        ],
        env=serve.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3 and f"pid {second}" in r.stderr, r.stderr
    assert serve.node_pid() == second
    assert serve.stop(signal.SIGTERM) == 0, serve.tail()
    assert serve.leftovers() == []
    api.close()


@pytest.mark.timeout(400)
def test_serve_killed_and_started_again_keeps_instances_and_checkpoints(tmp_path, installations):
    """With its own embedded PostgreSQL: a crashed serve's handle must not keep it running."""
    serve = Serve(tmp_path / "data", None)
    installations.append(serve)
    serve.start()
    api = serve.api("s@example.com")
    iid = create_running(api)
    run(api, iid, "echo one > /root/f.txt && echo up > /tmp/alive")
    r = api.post(f"/v1/instances/{iid}/checkpoints", json={"name": "one"})
    assert r.status_code == 201, r.text
    checkpoint = r.json()["id"]
    run(api, iid, "echo two > /root/f.txt")
    node = serve.node_pid()

    assert serve.stop(signal.SIGKILL) == -signal.SIGKILL
    serve.start()  # the node is adopted, not twinned: same process, same sandboxes
    assert serve.node_pid() == node
    assert "adopted" in serve.tail()
    assert run(api, iid, "cat /tmp/alive /root/f.txt")["stdout"] == "up\ntwo\n"
    time.sleep(6)
    assert status(api, iid) == ("running", None)
    names = [c["name"] for c in api.get(f"/v1/instances/{iid}/checkpoints").json()["data"]]
    assert names == ["one"]
    r = api.post(f"/v1/instances/{iid}/rollback", json={"checkpoint_id": checkpoint})
    assert r.status_code == 200, r.text
    assert wait_exec(api, iid, "cat /root/f.txt")["stdout"] == "one\n"

    assert serve.stop(signal.SIGTERM) == 0, serve.tail()
    assert serve.leftovers() == []  # the embedded PostgreSQL too, though a dead serve held it
    api.close()
