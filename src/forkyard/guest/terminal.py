"""A shell under a pseudo-terminal for one client (op `pty`): SSH sessions and web consoles.

Request: {"op": "pty", "argv"?: [...], "cmd"?: str, "env"?: {}, "cwd"?: str,
"term"?: "xterm-256color", "rows"?: 24, "cols"?: 80}. Without argv or cmd it runs a login
shell. STDIN frames are keystrokes (an empty one is ignored: a terminal has no EOF of its
own); STDOUT frames are what the terminal shows. CONTROL frames: {"resize": {"rows", "cols"}}
(TIOCSWINSZ: the kernel tells the foreground job with SIGWINCH), {"signal": N} to the
session's process group, {"cancel": true} to hang it up. The answer carries exit_code/signal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time

from . import protocol as p
from .channel import ChannelClosed, Credit, Inbox
from .execution import BASE_ENV
from .files import HOME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Send = Callable[[bytes], None]

# After the shell exits, output still in the terminal is read this long at most.
EXIT_DRAIN_S = 0.2
MAX_DIMENSION = 10000


def set_size(fd: int, rows: Any, cols: Any) -> None:
    rows = max(1, min(int(rows or 24), MAX_DIMENSION))
    cols = max(1, min(int(cols or 80), MAX_DIMENSION))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _become_session_leader_with_tty() -> None:
    # start_new_session already made this child a session leader; the terminal on fd 0 then
    # becomes its controlling terminal, so job control and ^C work as in any terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _shell_argv(req: dict[str, Any]) -> list[str]:
    argv = req.get("argv")
    if argv:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of strings")
        return argv
    cmd = req.get("cmd")
    if isinstance(cmd, str) and cmd:
        return ["/bin/sh", "-c", cmd]
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    return [shell, "-l"]


class PtySession:
    """One terminal on one channel; serve() blocks its own thread until the shell is gone."""

    def __init__(self, send: Send, channel: int, req: dict[str, Any]) -> None:
        self.send = send
        self.channel = channel
        self.req = req
        self.credit = Credit()
        self.inbox = Inbox()
        self.master = -1
        self.proc: subprocess.Popen | None = None
        self.cancelled = False
        self._lock = threading.Lock()

    # --- the connection's reader thread ---
    def on_stdin(self, data: bytes) -> None:
        if data:
            self.inbox.put(data)

    def on_control(self, msg: dict[str, Any]) -> None:
        with self._lock:
            proc, master = self.proc, self.master
        if msg.get("cancel"):
            self.cancelled = True
            if proc is not None:
                _killpg(proc.pid, signal.SIGHUP)
                _killpg(proc.pid, signal.SIGKILL)
            return
        if proc is None:
            return
        size = msg.get("resize")
        if isinstance(size, dict) and master >= 0:
            with contextlib.suppress(OSError, ValueError, TypeError):
                set_size(master, size.get("rows"), size.get("cols"))
        elif "signal" in msg:
            with contextlib.suppress(ValueError, TypeError):
                _killpg(proc.pid, int(msg["signal"]))

    def on_connection_lost(self) -> None:
        self.credit.close()
        self.inbox.close()
        self.on_control({"cancel": True})

    # --- the session's own thread ---
    def serve(self) -> None:
        try:
            body = self.run()
            body["ok"] = True
        except (OSError, ValueError) as exc:
            body = {"ok": False, "error": {"code": p.E_SPAWN, "message": str(exc)}}
        except ChannelClosed:
            return
        with contextlib.suppress(OSError, ChannelClosed):
            self.send(p.encode_json(p.RESPONSE, self.channel, body))

    def _spawn(self) -> subprocess.Popen:
        master, slave = os.openpty()
        try:
            set_size(master, self.req.get("rows"), self.req.get("cols"))
            env = dict(os.environ)
            env.update(BASE_ENV)
            env["TERM"] = str(self.req.get("term") or "xterm-256color")[:64]
            env.update({str(k): str(v) for k, v in (self.req.get("env") or {}).items()})
            cwd = self.req.get("cwd") or (HOME if os.path.isdir(HOME) else "/")
            proc = subprocess.Popen(
                _shell_argv(self.req),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_become_session_leader_with_tty,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        with self._lock:
            self.master, self.proc = master, proc
        if self.cancelled:
            _killpg(proc.pid, signal.SIGKILL)
        return proc

    def _pump_input(self) -> None:
        """Keystrokes to the terminal, on a thread of their own: a shell that does not read
        fills the terminal's buffer, and must stall only this session."""
        while True:
            chunk = self.inbox.get()
            if not chunk:
                return
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(self.master, view) :]
            except OSError:
                pass
            try:
                self.send(p.encode_window(self.channel, len(chunk)))
            except (OSError, ChannelClosed):
                return

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        proc = self._spawn()
        master = self.master
        self.send(p.encode_json(p.EVENT, self.channel, {"event": "start", "pid": proc.pid}))
        threading.Thread(target=self._pump_input, daemon=True, name="pty-in").start()
        exited_at: float | None = None
        try:
            while True:
                if exited_at is None and proc.poll() is not None:
                    exited_at = time.monotonic()
                wait = 0.05 if exited_at is None else EXIT_DRAIN_S
                ready, _, _ = select.select([master], [], [], wait)
                if not ready:
                    if exited_at is not None:
                        break
                    continue
                try:
                    data = os.read(master, p.CHUNK_SIZE)
                except OSError as exc:
                    if exc.errno == errno.EIO:  # every holder of the terminal closed it
                        break
                    raise
                if not data:
                    break
                view = memoryview(data)
                while view:
                    n = self.credit.take(len(view))
                    self.send(p.encode(p.STDOUT, self.channel, bytes(view[:n])))
                    view = view[n:]
                if exited_at is not None and time.monotonic() - exited_at > EXIT_DRAIN_S:
                    break
        finally:
            self.inbox.close()
            # The session's other processes (a backgrounded job) are hung up with it.
            _killpg(proc.pid, signal.SIGHUP)
            rc = proc.wait()
            with self._lock:
                self.master = -1
            os.close(master)
        return {
            "exit_code": rc if rc >= 0 else 128 - rc,
            "signal": -rc if rc < 0 else None,
            "duration_ms": round((time.monotonic() - start) * 1000, 3),
        }


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
