"""Starting a sandbox's processes: the guest code it runs, bwrap's command line, the launcher
that joins the cgroups, the log the node keeps of its output, and waiting for its agent.

Isolation itself (the user namespace, capabilities, seccomp) is decided in node/isolation.py
and node/seccomp.py (ADR 0010); this module only puts it on bwrap's command line.
"""

from __future__ import annotations

import asyncio
import compileall
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from forkyard.node import isolation, storage
from forkyard.node.agent_client import AgentClient
from forkyard.node.drivers.base import InstanceInfo, SandboxSpec
from forkyard.node.errors import AgentUnavailable, SandboxFailed

GUEST_MOUNT = "/opt/forkyard/forkyard_guest"
SOCKET_NAME = "agent.sock"
BOOT_TIMEOUT_S = 10.0
GUEST_PYTHON = "/usr/bin/python3"
# -I -S: no site-packages, no user env, no cwd on sys.path: the agent needs only the stdlib,
# and skipping site saves ~10 ms of boot.
AGENT_BOOT = (
    "import sys; sys.path.insert(0, '/opt/forkyard'); from forkyard_guest.agent import main; main()"
)
# The launcher joins the instance's cgroups itself, then becomes bwrap (through nsenter, inside
# the instance's user namespace as its root): every process of the instance is accounted and
# limited from its first instruction, and none is ever host root.
LAUNCHER = 'for c in $FORKYARD_CGROUPS; do echo $$ > "$c/cgroup.procs" || exit 121; done; exec "$@"'
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
LOG_MAX_BYTES = 1 << 20  # of one boot's output kept in agent.log; the rest is read and dropped


@dataclass
class Running:
    """A booted sandbox: its spec, the launcher (bwrap, once exec'd), the agent's client."""

    spec: SandboxSpec
    proc: asyncio.subprocess.Process
    client: AgentClient
    info: InstanceInfo


def install_guest(roots_dir: Path, source: Path) -> Path:
    """A root-owned copy of the guest agent's code, bound read-only into every instance: not
    the source tree itself, so nothing an instance does to its view can reach our code.
    Precompiled, so the agent does not compile at boot."""
    dest = roots_dir / ".guest"
    tmp = roots_dir / f".guest-{os.getpid()}"
    storage.remove_tree(tmp)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(str(tmp), quiet=1, ddir=GUEST_MOUNT)
    for root, _dirs, files in os.walk(tmp):
        os.chmod(root, 0o755)  # noqa: S103 (readable code, writable by host root only)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    if dest.exists():
        old = roots_dir / f".guest-old-{os.getpid()}"
        os.replace(dest, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def bwrap_argv(
    bwrap: str,
    spec: SandboxSpec,
    root: Path,
    guest_dir: Path,
    *,
    userns: int,
    filter_fd: int,
    agent_fd: int,
) -> list[str]:
    """nsenter makes the launcher root of the instance's user namespace (its host uid is
    the range's first); bwrap then builds the sandbox as that unprivileged user: capabilities
    bounded to CAPABILITIES, no_new_privs, the seccomp filter (bwrap always sets
    no_new_privs; it loads the filter last, just before the agent starts)."""
    env = {**BASE_ENV, "HOSTNAME": spec.hostname or spec.instance_id, **spec.env}
    argv = [
        "nsenter", f"--user=/proc/{os.getpid()}/fd/{userns}", "--setuid=0", "--setgid=0",
        bwrap,
        "--bind", str(root), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",  # noqa: S108 (the instance's own /tmp)
        "--ro-bind", str(guest_dir), GUEST_MOUNT,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname", spec.hostname or spec.instance_id,
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--chdir", "/",
        "--cap-drop", "ALL",
    ]  # fmt: skip
    for cap in isolation.CAPABILITIES:
        argv += ["--cap-add", cap]
    argv += ["--seccomp", str(filter_fd)]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    argv += [GUEST_PYTHON, "-I", "-S", "-c", AGENT_BOOT, "--listen-fd", str(agent_fd)]
    return argv


async def spawn(
    argv: list[str], cgroups: list[Path], pass_fds: tuple[int, ...]
) -> asyncio.subprocess.Process:
    """The launcher: joins `cgroups`, then execs `argv`. Output goes through a pipe the node
    drains, not into a host file the sandbox holds: whatever writes there (a process inside can
    ptrace the sandbox's init), the host keeps at most LOG_MAX_BYTES of it."""
    return await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        LAUNCHER,
        "forkyard-launcher",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        pass_fds=pass_fds,
        env={"FORKYARD_CGROUPS": " ".join(str(p) for p in cgroups), **BASE_ENV},
    )


async def keep_log(stream: asyncio.StreamReader, path: Path) -> None:
    """Write the sandbox's output to `path` (new for each boot), up to LOG_MAX_BYTES, and keep
    reading past that, so nothing inside ever blocks on a full pipe; ends when the last process
    holding the pipe is gone."""
    written = 0
    with open(path, "wb") as f:
        while chunk := await stream.read(65536):
            if written < LOG_MAX_BYTES:
                kept = chunk[: LOG_MAX_BYTES - written]
                f.write(kept)
                f.flush()
                written += len(kept)


def tail(d: Path, n: int = 2000) -> str:
    try:
        return (d / "agent.log").read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


async def wait_for_agent(
    sock: Path, proc: asyncio.subprocess.Process, d: Path, log: asyncio.Task[None] | None
) -> AgentClient:
    """A client of the agent once it answers a ping. The node bound the listening socket before
    the launch, so the first connect is queued until the agent accepts: no polling for it."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    delay = 0.001
    while True:
        if proc.returncode is not None:
            if log is not None:  # the sandbox's last words, before reading them
                await asyncio.wait({log}, timeout=1.0)
            raise SandboxFailed(f"sandbox exited with {proc.returncode}: {tail(d)}")
        if sock.exists():
            try:
                client = await AgentClient.connect(str(sock), timeout=1.0)
            except AgentUnavailable:
                pass
            else:
                try:
                    await client.ping(timeout=2.0)
                    return client
                except AgentUnavailable:
                    await client.close()  # a slow agent: a new connection and ping next round
        if time.monotonic() > deadline:
            raise SandboxFailed(f"agent not ready after {BOOT_TIMEOUT_S}s: {tail(d)}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.004)
