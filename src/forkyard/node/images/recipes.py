"""Image recipes: the two build steps that need the Debian mirror, run with host tools (see
forkyard.node.images)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forkyard.node import storage
from forkyard.node.errors import NodeError

if TYPE_CHECKING:
    from forkyard.node.drivers.base import Driver
from forkyard.node.images.default import _ensure_mount_points, _finish_image, debootstrap_argv

# --- image recipes: the build steps that need the Debian mirror (see the module docstring) ---

SCRATCH_IMAGE = "scratch"  # an empty rootfs: suite images are a layer holding the whole system
# Debian's grammar (Policy 5.6.1): lower-case letters, digits, + - . ; two or more; alnum first.
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")
# A suite or codename: bookworm, trixie, sid, stable, bookworm-backports, ...
SUITE_RE = re.compile(r"^[a-z][a-z0-9]{1,30}(-[a-z0-9]{1,30})?$")
AGENT_PACKAGES = ("python3",)  # the guest agent runs on the image's python3
DEB_INBOX = "/var/cache/forkyard-debs"  # where fetched .debs land inside the build sandbox
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LISTS_MAX_AGE_S = 6 * 3600
STATUS_MAX_BYTES = 64 * 1024 * 1024
TICK_S = 2.0

Emit = Callable[[dict[str, Any]], None]


class BuildStepFailed(NodeError):
    status_code = 422
    code = "build_step_failed"
    message = "The image build step failed."


class BuildSandboxExists(NodeError):
    status_code = 409
    code = "instance_exists"
    message = "The build sandbox already exists; delete it first."


def check_packages(packages: list[str]) -> list[str]:
    bad = [p for p in packages if not isinstance(p, str) or not PACKAGE_RE.match(p)]
    if bad:
        raise BuildStepFailed(f"invalid package names: {', '.join(map(str, bad))[:300]}")
    return packages


def check_suite(suite: str) -> str:
    if not isinstance(suite, str) or not SUITE_RE.match(suite):
        raise BuildStepFailed(f"invalid suite name {str(suite)[:40]!r}")
    return suite


def image_cache_root(images: dict[str, Path], fallback: Path) -> Path:
    """The machine's image cache: where the default rootfs lives (<root>/default/rootfs)."""
    default = images.get("default")
    return default.parent.parent if default is not None else fallback


def ensure_scratch_image(cache_root: Path) -> Path:
    """The empty rootfs suite images stack on (only the sandbox's mount points)."""
    rootfs = cache_root / SCRATCH_IMAGE / "rootfs"
    _ensure_mount_points(rootfs)
    return rootfs


def deb_cache(cache_root: Path) -> Path:
    debs = cache_root / "debs"
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    return debs


_steps: dict[tuple[str, str], asyncio.Task[Any]] = {}


def event_stream(
    driver: Driver, instance_id: str, work: Callable[[Emit], Awaitable[dict[str, Any]]]
) -> AsyncIterator[bytes]:
    """Run a build step as a task and stream its events as NDJSON: {"type": "log", "line"},
    {"type": "tick"} while it is quiet, then {"type": "done", ...} or {"type": "error", "code",
    "message"}. Closing the stream (or `cancel_step`) cancels the task, which cleans up."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    key = (str(driver.data_dir), instance_id)

    async def runner() -> None:
        try:
            queue.put_nowait({"type": "done", **await work(queue.put_nowait)})
        except NodeError as exc:
            queue.put_nowait({"type": "error", "code": exc.code, "message": exc.message})
        except Exception as exc:
            queue.put_nowait({"type": "error", "code": "build_step_failed", "message": str(exc)})
        finally:
            queue.put_nowait(None)
            if _steps.get(key) is asyncio.current_task():
                _steps.pop(key, None)

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.create_task(runner())
        _steps[key] = task
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), TICK_S)
                except TimeoutError:
                    event = {"type": "tick"}
                if event is None:
                    break
                yield (json.dumps(event) + "\n").encode()
        finally:
            if not task.done():
                task.cancel()

    return body()


async def cancel_step(driver: Driver, instance_id: str) -> None:
    """Stop the build step running for this sandbox, if any, and wait until it cleaned up."""
    task = _steps.get((str(driver.data_dir), instance_id))
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


@contextlib.asynccontextmanager
async def _cache_lock(cache: Path, emit: Emit) -> AsyncIterator[None]:
    """The machine's .deb cache, one build at a time (nodes on one machine share it)."""
    fd = os.open(cache / ".forkyard.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    emit(
                        {"type": "log", "line": "waiting for another build using the package cache"}
                    )
                    waited = True
                await asyncio.sleep(0.5)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _run_host(
    argv: list[str],
    emit: Emit | None,
    on_line: Callable[[str], None] | None = None,
    *,
    hide: dict[Path, str] | None = None,
) -> tuple[int, list[str]]:
    """Run a host tool in its own process group, streaming its output; killed if cancelled.
    The output reaches the image's owner (its logs and error): each path of `hide` in it is
    replaced by its label, so no line names a directory of the host."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        },
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            for path, label in (hide or {}).items():
                line = line.replace(str(path), label)
            lines.append(line)
            if emit is not None and line:
                emit({"type": "log", "line": line})
            if on_line is not None:
                on_line(line)
        return await proc.wait(), lines
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())


def _tail(lines: list[str], n: int = 15) -> str:
    return "\n".join(line for line in lines[-n:] if line)


# debootstrap's phases as build progress (0-100 of the bootstrap step)
_PHASES = (
    ("I: Retrieving InRelease", 2),
    ("I: Resolving dependencies", 5),
    ("I: Found ", 8),
    ("I: Retrieving ", 10),
    ("I: Validating ", 10),
    ("I: Extracting ", 40),
    ("I: Installing core packages", 50),
    ("I: Unpacking the base system", 60),
    ("I: Configuring the base system", 75),
    ("I: Configuring ", 80),
    ("I: Base system installed successfully", 100),
)


async def bootstrap_build_disk(
    driver: Driver,
    instance_id: str,
    *,
    suite: str,
    packages: list[str],
    disk_mb: int,
    cache_root: Path,
    mirror: str,
    emit: Emit,
) -> dict[str, Any]:
    """Create the build sandbox's disk and debootstrap `suite` into its upper directory.
    The sandbox must not exist yet; on any failure or cancellation nothing of it is left."""
    check_suite(suite)
    check_packages(packages)
    include = sorted({*AGENT_PACKAGES, *packages})
    async with driver._lock(instance_id):
        d = driver.instance_dir(instance_id)
        disk = driver.disk_image(instance_id)
        if d.exists() or disk.exists():
            raise BuildSandboxExists()
        d.mkdir()
        done = False
        try:
            await storage.create_disk(disk, disk_mb)
            # debootstrap (host root, Debian's own packages, before anything of the org's runs)
            # makes the standard device nodes in the target: the one mount of an instance disk
            # that allows them. _finish_image removes them, and the sandbox mounts it nodev.
            await storage.mount_disk(disk, d / "disk", devices=True)
            upper = d / "disk" / "upper"
            upper.mkdir()
            (d / "disk" / "work").mkdir()
            debs = deb_cache(cache_root)
            progress = 0

            def phase(line: str) -> None:
                nonlocal progress
                for prefix, pct in _PHASES:
                    if line.startswith(prefix) and pct > progress:
                        progress = pct
                        emit({"type": "progress", "percent": pct})
                        break

            emit(
                {"type": "log", "line": f"debootstrap {suite} ({', '.join(include)}) from {mirror}"}
            )
            t0 = time.monotonic()
            async with _cache_lock(debs, emit):
                # A private mount namespace: whatever debootstrap mounts in the target (proc,
                # sys) goes away with it, even when it is killed.
                rc, lines = await _run_host(
                    [
                        "unshare",
                        "--mount",
                        "--propagation",
                        "private",
                        *debootstrap_argv(upper, suite, mirror, include, debs),
                    ],
                    emit,
                    phase,
                    hide={upper: "<target>", d: "<build sandbox>", debs: "<deb cache>"},
                )
            if rc != 0:
                raise BuildStepFailed(f"debootstrap exited {rc}: {_tail(lines, 5)}"[:2000])
            await asyncio.to_thread(_finish_image, upper, f"{suite} minbase")
            done = True
            return {"suite": suite, "seconds": round(time.monotonic() - t0, 1)}
        finally:
            for mp in storage.mounts_under(d):
                with contextlib.suppress(Exception):
                    storage.unmount(mp)
            if not done:
                await asyncio.shield(asyncio.to_thread(_remove_build, d, disk))


def _remove_build(d: Path, disk: Path) -> None:
    storage.remove_tree(d)
    disk.unlink(missing_ok=True)


def _codename(os_release: str) -> str:
    values = dict(
        (k, v.strip().strip('"'))
        for k, _, v in (line.partition("=") for line in os_release.splitlines())
    )
    codename = values.get("VERSION_CODENAME") or ""
    if not codename and "/sid" in values.get("PRETTY_NAME", ""):
        codename = "sid"
    if not SUITE_RE.match(codename):
        raise BuildStepFailed("the image's /etc/os-release names no Debian codename")
    return codename


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([a-z0-9-]+)\]\)")


def _planned_debs(simulation: list[str]) -> list[tuple[str, str, str]]:
    """(package, version, architecture) of each `Inst` line of `apt-get -s install`."""
    return [m.groups() for line in simulation if (m := _INST.match(line))]  # type: ignore[misc]


def _lists_fresh(lists: Path) -> bool:
    newest = max((p.stat().st_mtime for p in lists.glob("*_Packages*")), default=0.0)
    return time.time() - newest < LISTS_MAX_AGE_S


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


async def fetch_packages(
    driver: Driver,
    instance_id: str,
    *,
    packages: list[str],
    cache_root: Path,
    mirror: str,
    emit: Emit,
) -> dict[str, Any]:
    """Download what installing `packages` needs on the running build sandbox's image (the
    host's apt, resolving against the image's dpkg status) and write the .debs into the
    sandbox at DEB_INBOX. Returns their paths there, for an offline `apt-get install`."""
    check_packages(packages)
    async with driver._lock(instance_id):
        client = await driver.agent(instance_id)
        status = await client.read_file("/var/lib/dpkg/status", limit=STATUS_MAX_BYTES)
        suite = _codename((await client.read_file("/etc/os-release", limit=65536)).decode())
        debs = deb_cache(cache_root)
        state = cache_root / "apt" / suite
        (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (state / "cache").mkdir(exist_ok=True)
        signed = f"[signed-by={KEYRING}] " if KEYRING.exists() else ""
        (state / "sources.list").write_text(f"deb {signed}{mirror} {suite} main\n")
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=state))
        hide = {work: "<apt state>", debs: "<deb cache>", cache_root: "<image cache>"}
        try:
            (work / "status").write_bytes(status)
            apt = [
                "apt-get",
                "-q",
                "-o", f"Dir::State::status={work / 'status'}",
                "-o", f"Dir::State::extended_states={work / 'extended_states'}",
                "-o", f"Dir::State::Lists={state / 'lists'}",
                "-o", f"Dir::Cache={state / 'cache'}",
                "-o", f"Dir::Cache::archives={debs}",
                "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
                "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", "APT::Install-Recommends=false",
                "-o", "APT::Sandbox::User=root",
            ]  # fmt: skip
            emit({"type": "log", "line": f"resolving {' '.join(packages)} for {suite}"})
            async with _cache_lock(debs, emit):
                updated = False
                if not _lists_fresh(state / "lists"):
                    await _apt_update(apt, emit, hide)
                    updated = True
                while True:
                    rc, plan = await _run_host([*apt, "-s", "install", *packages], None, hide=hide)
                    if rc == 0:
                        rc, lines = await _run_host(
                            [*apt, "-y", "--download-only", "install", *packages], emit, hide=hide
                        )
                    else:
                        lines = plan
                        for line in plan:
                            if line.startswith(("E:", "W:")) or "has no installation" in line:
                                emit({"type": "log", "line": line})
                    if rc == 0 or updated:
                        break
                    # Stale lists name versions the mirror no longer has: refresh once.
                    await _apt_update(apt, emit, hide)
                    updated = True
                if rc != 0:
                    raise BuildStepFailed(f"apt-get exited {rc}: {_tail(lines, 5)}"[:2000])
            planned = _planned_debs(plan)
            files = [debs / f"{p}_{v.replace(':', '%3a')}_{a}.deb" for p, v, a in planned]
            missing = [f.name for f in files if not f.exists()]
            if missing:
                raise BuildStepFailed(f"apt did not download {', '.join(missing)[:500]}")
            inside = []
            for f in files:
                target = f"{DEB_INBOX}/{f.name}"
                await client.write_file(target, _file_chunks(f), mode=0o644)
                inside.append(target)
            size = sum(f.stat().st_size for f in files)
            emit({"type": "log", "line": f"{len(files)} packages ({size // 1024} KiB) ready"})
            return {"suite": suite, "debs": inside, "bytes": size}
        finally:
            shutil.rmtree(work, ignore_errors=True)


async def _apt_update(apt: list[str], emit: Emit, hide: dict[Path, str]) -> None:
    rc, lines = await _run_host([*apt, "update"], emit, hide=hide)
    if rc != 0:
        raise BuildStepFailed(f"apt-get update exited {rc}: {_tail(lines, 5)}"[:2000])
