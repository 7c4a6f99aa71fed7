"""The default instance image: a Debian minbase rootfs built once and kept as a read-only layer."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

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
    if _is_complete(target):
        _ensure_mount_points(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target):
            return target
        if target.exists():  # an interrupted rename or a foreign dir: rebuild
            shutil.rmtree(target)
        for stale in target.parent.glob(".rootfs-build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-build-", dir=target.parent))
        try:
            _debootstrap(tmp, mirror or apt_mirror(), packages, progress)
            _finish_image(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _is_complete(target: Path) -> bool:
    return (target / ".forkyard-image").exists()


def _debootstrap(dest: Path, mirror: str, packages: tuple[str, ...], progress: ProgressFn | None):
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        DEFAULT_SUITE,
        str(dest),
        mirror,
    ]
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


def _finish_image(rootfs: Path) -> None:
    # Trim what a sandbox never needs; apt caches only bloat every instance's lower layer.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = rootfs / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file() and entry.name not in ("lock",):
                    entry.unlink()
    _ensure_mount_points(rootfs)
    (rootfs / ".forkyard-image").write_text("default bookworm minbase\n")


def _ensure_mount_points(rootfs: Path) -> None:
    # The sandbox binds over these; present in the lower layer, bwrap need not create them in
    # every instance's upper layer.
    for sub in ("opt/forkyard/forkyard_guest", "run/forkyard"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
