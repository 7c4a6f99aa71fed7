"""The default instance image: a Debian minbase rootfs built once with debootstrap and kept as a
read-only lower layer (`ensure_default_image`)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

DEFAULT_SUITE = "bookworm"
DEFAULT_PACKAGES = (
    "bash",
    "coreutils",
    "python3",
    "git",
    "curl",
    "procps",
    "iproute2",
    "ca-certificates",
    # The Python language server (LSP, `GET /v1/instances/{id}/lsp/python`); pyflakes is only
    # Suggested by it, and gives the syntax errors and undefined names it reports. Without
    # setuptools' metadata pylsp loads none of its plugins (they require `setuptools>=39`), and
    # answers every completion with nothing.
    "python3-pylsp",
    "python3-pyflakes",
    "python3-setuptools",
)
FALLBACK_MIRROR = "http://deb.debian.org/debian"

ProgressFn = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """debootstrap failed; the message carries the tail of its output."""


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URL this machine's apt uses (only that registry is reachable here)."""
    candidates: list[Path] = []
    main_list = sources_dir / "sources.list"
    if main_list.exists():
        candidates.append(main_list)
    parts = sources_dir / "sources.list.d"
    if parts.is_dir():
        candidates.extend(sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources")))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        # deb822: a stanza with "URIs:" and a "Suites:" naming the plain suite (not -security).
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and DEFAULT_SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
        # one-line format: deb [opts] URL SUITE COMPONENTS
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == DEFAULT_SUITE:
                return m.group(1).rstrip("/")
    return FALLBACK_MIRROR


def default_image_dir(cache_dir: Path) -> Path:
    return cache_dir / "default" / "rootfs"


def ensure_default_image(
    data_dir: Path,
    progress: ProgressFn | None = None,
    *,
    cache_dir: Path | None = None,
    mirror: str | None = None,
    packages: tuple[str, ...] = DEFAULT_PACKAGES,
) -> Path:
    """Return the default rootfs, building it with debootstrap on first use.

    The image lives at <cache_dir or data_dir/images>/default/rootfs. It is built in a temporary
    directory next to it and renamed into place, under an exclusive lock file, so concurrent
    callers wait for one build and a crash never leaves a half-built image at the final path.
    """
    root = cache_dir if cache_dir is not None else data_dir / "images"
    target = default_image_dir(root)
    marker = default_image_marker(packages)
    if _is_complete(target, marker):
        _ensure_mount_points(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target, marker):
            return target
        # An image replaced by an earlier rebuild: nodes started since use the new one.
        for stale in [
            *target.parent.glob(".rootfs-build-*"),
            *target.parent.glob(".rootfs-replaced-*"),
        ]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-build-", dir=target.parent))
        try:
            _debootstrap(tmp, mirror or apt_mirror(), packages, progress)
            _finish_image(tmp, marker)
            if target.exists():
                # An image of another package list (or a foreign dir): moved aside, not
                # deleted, since instances of a node that is still running may stack on it.
                os.rename(target, target.with_name(f".rootfs-replaced-{time.time_ns()}"))
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def default_image_marker(packages: tuple[str, ...]) -> str:
    """What the built image records: a changed package list no longer matches, so the next
    node start rebuilds the image."""
    return f"default {DEFAULT_SUITE} minbase packages={','.join(sorted(packages))}"


def _is_complete(target: Path, marker: str) -> bool:
    try:
        return (target / ".forkyard-image").read_text().strip() == marker
    except OSError:
        return False


def debootstrap_argv(
    dest: Path,
    suite: str,
    mirror: str,
    packages: tuple[str, ...] | list[str],
    cache_dir: Path | None = None,
) -> list[str]:
    """debootstrap of a minbase `suite` into `dest` (the default image and suite builds)."""
    argv = ["debootstrap", "--variant=minbase"]
    if packages:
        argv.append(f"--include={','.join(packages)}")
    if cache_dir is not None:
        argv.append(f"--cache-dir={cache_dir}")
    return [*argv, suite, str(dest), mirror]


def _debootstrap(dest: Path, mirror: str, packages: tuple[str, ...], progress: ProgressFn | None):
    argv = debootstrap_argv(dest, DEFAULT_SUITE, mirror, packages)
    tail: list[str] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-30:], line]
            if progress is not None:
                progress(line)
        rc = proc.wait()
    if rc != 0:
        raise ImageBuildError(f"debootstrap exited {rc}:\n" + "\n".join(tail))


def _finish_image(rootfs: Path, marker: str = "default bookworm minbase") -> None:
    # Trim what a sandbox never needs; apt caches only bloat every instance's lower layer.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = rootfs / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() and entry.name not in ("lock",):
                    entry.unlink()
    _remove_device_nodes(rootfs / "dev")
    _ensure_mount_points(rootfs)
    (rootfs / ".forkyard-image").write_text(marker + "\n")


def _remove_device_nodes(dev: Path) -> None:
    """An instance's /dev is the sandbox's own: device nodes in a layer are dead weight (and
    every mount of a layer is nodev anyway)."""
    for root, _dirs, files in os.walk(dev):
        for name in files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.unlink(path)


def _ensure_mount_points(rootfs: Path) -> None:
    # The sandbox binds over these; present in the lower layer, bwrap need not create them in
    # every instance's upper layer.
    for sub in ("opt/forkyard/forkyard_guest", "run/forkyard"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
