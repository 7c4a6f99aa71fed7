"""Who an instance is on the host: its own user namespace, uid range and capability set.

Every sandbox (instances and image builds) runs as root of its own user namespace, whose ids
0-65535 map to a range of host ids that belongs to that sandbox alone while it runs, and that
owns nothing on the host. Files keep their ownership as the instance sees it on disk (a file of
root inside is uid 0 in the disk image), and the node shows them to the instance through
idmapped mounts of that range. So checkpoints, forks, rollback, layer copies between servers
and image builds move plain files, and a layer booted later under another range still reads
right. See docs/adr/0010-user-namespaces.md.

Host ranges are claimed host-wide (several installations may share a machine) by files in
CLAIMS_DIR; a claim whose sandbox has no process left is taken back after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forkyard.node.errors import SandboxFailed

FIRST_HOST_ID = 2_000_000_000  # far above login users and the usual /etc/subuid ranges
RANGE_SIZE = 65536
MAX_SLOTS = (0xFFFFFFFE - FIRST_HOST_ID) // RANGE_SIZE
CLAIMS_DIR = Path("/run/forkyard/uid-ranges")
CLAIM_GRACE_S = 60.0  # a sandbox boots within seconds; a younger claim is never taken back

# What root of an instance may do inside its own namespaces: the set container runtimes give
# a container's root. Not CAP_SYS_ADMIN (mounts, namespaces), not CAP_SYS_PTRACE, not
# CAP_NET_ADMIN, not CAP_SYS_MODULE/RAWIO/TIME/BOOT/SYSLOG.
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
)


@dataclass(frozen=True)
class UidRange:
    """Host ids first..first+RANGE_SIZE-1, seen inside as 0..RANGE_SIZE-1."""

    slot: int

    @property
    def first(self) -> int:
        return FIRST_HOST_ID + self.slot * RANGE_SIZE

    def uid_map(self) -> str:
        return f"0 {self.first} {RANGE_SIZE}\n"

    def mount_map(self) -> str:
        """The idmapping of the instance's mounts: its range, plus the host's root shown as the
        unused id RANGE_SIZE. Overlayfs creates its work files and whiteouts as the mounter
        (host root), which an idmapped upper layer must be able to store; inside the instance
        such files are owned by nobody, and no process there can become that id."""
        return f"0 {self.first} {RANGE_SIZE}\n{RANGE_SIZE} 0 1\n"


# --- host-wide claims ---


def claim_range(owner: str, cgroup_procs: Path) -> UidRange:
    """Claim a free host range for a sandbox whose processes are listed in `cgroup_procs`."""
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _claims_lock():
        taken = {int(n) for n in os.listdir(CLAIMS_DIR) if n.isdigit()}
        for slot in range(MAX_SLOTS):
            if slot in taken and not _stale(CLAIMS_DIR / str(slot)):
                continue
            path = CLAIMS_DIR / str(slot)
            tmp = CLAIMS_DIR / f".{slot}.{os.getpid()}"
            tmp.write_text(f"{owner}\n{cgroup_procs}\n")
            os.replace(tmp, path)
            return UidRange(slot)
    raise SandboxFailed("no free uid range on this host")


def release_range(rng: UidRange, owner: str) -> None:
    path = CLAIMS_DIR / str(rng.slot)
    with _claims_lock(), contextlib.suppress(OSError):
        if path.read_text().split("\n", 1)[0] == owner:
            path.unlink()


def _stale(path: Path) -> bool:
    """A claim is stale when it is old enough and its sandbox's cgroup holds no process."""
    try:
        if time.time() - path.stat().st_mtime < CLAIM_GRACE_S:
            return False
        procs = Path(path.read_text().split("\n")[1])
        return not procs.read_text().strip()
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def _claims_lock() -> Iterator[None]:
    fd = os.open(CLAIMS_DIR / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- user namespaces, one pair per range, kept for the process's life ---

_namespaces: dict[int, tuple[int, int]] = {}
_ns_lock = threading.Lock()


def namespaces(rng: UidRange) -> tuple[int, int]:
    """(sandbox userns fd, mount-idmap userns fd) for the range, made on first use. The two are
    made side by side (each is a child process's round trip, and neither needs the other), and
    outside the lock, so boots of several ranges at once (a fork's children) make theirs in
    parallel."""
    with _ns_lock:
        found = _namespaces.get(rng.slot)
    if found is not None:
        return found
    children = [_unshare_child(), _unshare_child()]
    try:
        sandbox_ns = _adopt_userns(children[0], rng.uid_map())
        try:
            made = (sandbox_ns, _adopt_userns(children[1], rng.mount_map()))
        except BaseException:
            os.close(sandbox_ns)
            raise
    finally:
        for child in children:
            child.kill()
            child.wait()
    with _ns_lock:
        found = _namespaces.setdefault(rng.slot, made)
    if found is not made:  # made twice at once: the same maps, keep one
        for fd in made:
            os.close(fd)
    return found


def _unshare_child() -> subprocess.Popen[bytes]:
    """A short-lived child that makes a user namespace of its own and waits (killed once its
    namespace is held by an fd)."""
    return subprocess.Popen(
        ["unshare", "--user", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _adopt_userns(child: subprocess.Popen[bytes], mapping: str) -> int:
    """The child's user namespace with this uid and gid map, as an fd (it lives while the fd is
    open). Host root writes the maps (setgroups stays allowed, so root inside can drop
    supplementary groups as login tools do)."""
    mine = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + 5
    while os.readlink(f"/proc/{child.pid}/ns/user") == mine:
        if time.monotonic() > deadline or child.poll() is not None:
            raise SandboxFailed("could not create a user namespace")
        time.sleep(0.0002)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{child.pid}/{name}", "w") as f:
            f.write(mapping)
    return os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)


# --- ranges made ready ahead of boots ---


class RangePool:
    """A few ranges claimed, with their namespaces made, before any boot asks for one: a boot
    then takes one in a rename instead of paying two child processes (~4-10 ms) for its
    namespaces.

    A ready range is claimed host-wide like any other, under an owner naming this pool and the
    node's pid (`<node>:pool:<pid>`; an instance's is `<node>:<id>`, and ids have no colon),
    and kept alive by the node's own process (`/proc/<pid>/cmdline`): while the node
    runs no one else can take it, and once it is gone the claim is stale like a stopped
    sandbox's. take() hands it to an instance by rewriting the claim (owner and cgroup) under
    the claims lock, so a range is never held by two. close() gives the ready ones back, and a
    new pool of the same node first takes back what a previous process of it left (a crash).
    Thread-safe; fill() is slow (child processes) and meant for a worker thread."""

    def __init__(self, node: str, size: int = 2) -> None:
        self.size = size
        self._prefix = f"{node}:pool:"
        self._owner = f"{self._prefix}{os.getpid()}"
        self._ready: list[UidRange] = []
        self._lock = threading.Lock()  # the ready list
        self._fill_lock = threading.Lock()  # one fill at a time; close waits for it
        self._closed = False
        _release_dead_pools(self._prefix)
        # A pool dropped without close() (a test's driver, an exit on an exception) still gives
        # its ranges back when collected or at interpreter exit; only a SIGKILL leaves them to
        # the stale rule and to the node's next start.
        self._give_back = weakref.finalize(self, _give_back, self._owner, self._ready)

    def take(self, owner: str, cgroup_procs: Path) -> UidRange | None:
        """A ready range, now claimed by `owner`; None when none is ready (the caller claims
        and makes one itself)."""
        while True:
            with self._lock:
                if not self._ready:
                    return None
                rng = self._ready.pop()
            if _transfer(rng, self._owner, owner, cgroup_procs):
                return rng

    def ready(self) -> int:
        with self._lock:
            return len(self._ready)

    def fill(self) -> None:
        """Claim and prepare ranges until `size` are ready (or the pool is closed)."""
        with self._fill_lock:
            while not self._closed and self.ready() < self.size:
                rng = claim_range(self._owner, Path(f"/proc/{os.getpid()}/cmdline"))
                try:
                    namespaces(rng)
                except BaseException:
                    release_range(rng, self._owner)
                    raise
                with self._lock:
                    if self._closed:
                        release_range(rng, self._owner)
                        return
                    self._ready.append(rng)

    def close(self) -> None:
        """Give every ready range back (waits for a fill under way)."""
        self._closed = True
        with self._fill_lock, self._lock:
            self._give_back()


def _give_back(owner: str, ready: list[UidRange]) -> None:
    for rng in ready:
        release_range(rng, owner)
    ready.clear()


def _transfer(rng: UidRange, old_owner: str, owner: str, cgroup_procs: Path) -> bool:
    """Re-claim `rng` from `old_owner` to `owner`; False if the claim is no longer old_owner's."""
    path = CLAIMS_DIR / str(rng.slot)
    with _claims_lock():
        try:
            if path.read_text().split("\n", 1)[0] != old_owner:
                return False
        except OSError:
            return False
        tmp = CLAIMS_DIR / f".{rng.slot}.{os.getpid()}"
        tmp.write_text(f"{owner}\n{cgroup_procs}\n")
        os.replace(tmp, path)  # a fresh mtime: the grace period covers the boot
        return True


def _release_dead_pools(prefix: str) -> None:
    """Drop ready-range claims of earlier processes of this node (pid no longer running)."""
    if not CLAIMS_DIR.is_dir():
        return
    with _claims_lock():
        for name in os.listdir(CLAIMS_DIR):
            if not name.isdigit():
                continue
            path = CLAIMS_DIR / name
            with contextlib.suppress(OSError, ValueError):
                owner = path.read_text().split("\n", 1)[0]
                if owner.startswith(prefix) and not _alive(int(owner[len(prefix) :])):
                    path.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- idmapped mounts (open_tree + mount_setattr + move_mount; Linux 5.12+) ---

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000


def idmapped_bind(source: Path, target: Path, userns_fd: int, *, readonly: bool) -> None:
    """Bind `source` at `target` (created), nosuid and nodev, with ids shifted by the userns."""
    fd = _libc.syscall(
        SYS_OPEN_TREE, AT_FDCWD, str(source).encode(), OPEN_TREE_CLONE | os.O_CLOEXEC
    )
    if fd < 0:
        raise _mount_error("open_tree", source)
    try:
        flags = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
        attr = struct.pack("=QQQQ", flags | (MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, userns_fd)
        if _libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, attr, len(attr)) < 0:
            raise _mount_error("idmapping", source)
        target.mkdir(parents=True, exist_ok=True)
        if (
            _libc.syscall(
                SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, str(target).encode(), MOVE_MOUNT_F_EMPTY_PATH
            )
            < 0
        ):
            raise _mount_error("move_mount", target)
    finally:
        os.close(fd)


def _mount_error(what: str, path: Path) -> SandboxFailed:
    err = ctypes.get_errno()
    return SandboxFailed(f"{what} of {path} failed: {os.strerror(err or errno.EIO)}")
