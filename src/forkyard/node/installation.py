"""A node's identity on its host: the installation id that prefixes everything it creates there,
and the lock that lets one live process at a time be the node of a data dir (ADR 0009)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any

INSTALLATION_FILE = "installation-id"
LOCK_FILE = "node.lock"


def installation_id(data_dir: Path) -> str:
    """The random id of the installation this data dir belongs to, made on first use."""
    path = data_dir / INSTALLATION_FILE
    with contextlib.suppress(FileNotFoundError):
        if found := path.read_text().strip():
            return found
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{INSTALLATION_FILE}.{os.getpid()}")
    tmp.write_text(secrets.token_hex(5))
    try:
        os.link(tmp, path)  # the first writer wins; a racing second one reads its id
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def default_cgroup_parent(data_dir: Path) -> str:
    """`forkyard-<installation id>`: the node's cgroups never meet another installation's."""
    return f"forkyard-{installation_id(data_dir)}"


class NodeIdentityInUse(RuntimeError):
    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        super().__init__(
            f"another node (pid {holder.get('pid')}) is running with data dir {data_dir}; "
            "stop it first (one node per data dir)"
        )
        self.holder = holder


class NodeLock:
    """An exclusive flock on <data_dir>/node.lock for the node's whole life. The kernel drops it
    when the process dies however it dies, so a stale file never blocks a restart. The file
    says who holds it (pid, control plane, name) for a supervisor deciding to adopt or end it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = lock_holder(self.path.parent) or {}
                raise NodeIdentityInUse(self.path.parent, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), **holder}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor; the file may stay
            self._fd = None


def lock_holder(data_dir: Path) -> dict[str, Any] | None:
    """Who holds the node lock of `data_dir` ({"pid", "control_plane", "name"}), or None when
    no live process does."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            return None  # we got it: nobody holds it
        for _ in range(50):  # the holder writes its record right after taking the lock
            with contextlib.suppress(ValueError):
                found: dict[str, Any] = json.loads(os.pread(fd, 4096, 0) or b"{}")
                if found.get("pid"):
                    return found
            os.sched_yield()
        return {}
    finally:
        os.close(fd)
