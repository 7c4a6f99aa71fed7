"""The `forkyard` command, run as a real process: migrate, admin create-user, openapi, and serve
(with its own embedded PostgreSQL, stopped on exit)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from forkyard.db.migrate import head_revision
from tests.conftest import _admin_url

FORKYARD = [sys.executable, "-m", "forkyard.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKYARD_")}
    # FORKYARD_SSH_PORT=0: the SSH gateway of a `serve` takes any free port (2222 may be taken)
    env.update(
        FORKYARD_LOG_JSON="false", FORKYARD_LOCAL_NODE="false", FORKYARD_SSH_PORT="0", **extra
    )
    return env


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FORKYARD, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120
    )


def test_migrate_an_empty_database(pg_server_url, tmp_path):
    name = f"forkyard_cli_{os.getpid()}"
    admin = _admin_url(pg_server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = _admin_url(pg_server_url, name)
        r = run("migrate", cwd=tmp_path, FORKYARD_DATABASE_URL=url)
        assert r.returncode == 0, r.stderr
        assert f"revision {head_revision()}" in r.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
                head_revision(),
            )
        again = run("migrate", cwd=tmp_path, FORKYARD_DATABASE_URL=url)
        assert again.returncode == 0  # idempotent
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_admin_create_user(database_url, tmp_path):
    args = ["admin", "create-user", "--email", "root@example.com", "--staff"]
    r = run(
        *args,
        "--password",
        "a long admin passphrase",
        cwd=tmp_path,
        FORKYARD_DATABASE_URL=database_url,
    )
    assert r.returncode == 0, r.stderr
    assert "Created staff user usr_" in r.stderr
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT is_staff, email_verified_at IS NOT NULL, personal_org_id FROM users"
            " WHERE email = 'root@example.com'"
        ).fetchone()
    assert row is not None and row[0] is True and row[1] is True and row[2].startswith("org_")
    dup = run(
        *args,
        "--password",
        "a long admin passphrase",
        cwd=tmp_path,
        FORKYARD_DATABASE_URL=database_url,
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr
    weak = run(
        "admin",
        "create-user",
        "--email",
        "w@example.com",
        "--password",
        "short",
        cwd=tmp_path,
        FORKYARD_DATABASE_URL=database_url,
    )
    assert weak.returncode == 2


def test_openapi_prints_the_schema(tmp_path):
    r = run("openapi", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["openapi"].startswith("3.") and "/v1/auth/login" in schema["paths"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(180)
def test_serve_with_embedded_postgres_starts_and_stops(tmp_path):
    """Slow (about 10-20 s): initialises a PostgreSQL cluster in a fresh data dir."""
    port = _free_port()
    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemps, and initdb
    # (which runs as its own user) failed when its directory vanished mid-way.
    data = Path(tempfile.mkdtemp(prefix="forkyard-serve-test-")) / "data"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*FORKYARD, "serve", "--port", str(port), "--data-dir", str(data)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, (
            ready.text if ready is not None else proc.stdout.read() if proc.stdout else ""
        )
        print(f"serve ready after {time.monotonic() - started:.1f} s")
        pid_file = next(data.rglob("postmaster.pid"))
        postgres_pid = int(pid_file.read_text().splitlines()[0])
        os.kill(postgres_pid, 0)  # running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"listening on http://127.0.0.1:{port}" in out
    assert not pid_file.exists(), "embedded PostgreSQL left running"
    shutil.rmtree(data.parent, ignore_errors=True)
    status = Path(f"/proc/{postgres_pid}/status")
    # Gone, or a zombie waiting for a reaper (containers often run no init that reaps).
    assert not status.exists() or "\tZ" in status.read_text().split("State:")[1].splitlines()[0]


def test_ssh_pins_the_host_key_the_api_states_and_nothing_else(tmp_path, monkeypatch):
    """`forkyard ssh`'s known_hosts: the API's line for this gateway replaces an older one for
    the same address, other gateways' lines stay, and a line whose key does not match the
    API's fingerprint is refused before anything is written."""
    import typer

    from forkyard.cli.client import pin_host_key

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))

    def keyline(name: str) -> tuple[str, str]:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True
        )
        public = (tmp_path / f"{name}.pub").read_text().split()
        fp = subprocess.run(
            ["ssh-keygen", "-lf", str(tmp_path / f"{name}.pub")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        return f"{public[0]} {public[1]}", fp

    old, old_fp = keyline("old")
    new, new_fp = keyline("new")
    other, other_fp = keyline("other")
    gateway, elsewhere = "[127.0.0.1]:2222", "[ssh.example.com]:2222"
    pin_host_key({"known_hosts_line": f"{gateway} {old}", "host_key_fingerprint": old_fp})
    path = pin_host_key(
        {"known_hosts_line": f"{elsewhere} {other}", "host_key_fingerprint": other_fp}
    )
    pin_host_key({"known_hosts_line": f"{gateway} {new}", "host_key_fingerprint": new_fp})
    assert path == tmp_path / "config" / "forkyard" / "known_hosts"
    assert path.read_text().splitlines() == [f"{elsewhere} {other}", f"{gateway} {new}"]

    before = path.read_text()
    for line in (f"{gateway} {old}", f"{gateway} garbage", "nonsense"):
        with pytest.raises(typer.Exit) as refused:
            pin_host_key({"known_hosts_line": line, "host_key_fingerprint": new_fp})
        assert refused.value.exit_code == 1
    assert path.read_text() == before
