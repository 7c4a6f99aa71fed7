"""Running one command for a client: its own session, streamed output, timeout kills the group."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time

from . import protocol as p
from .channel import ChannelClosed, Credit, Inbox
from .files import HOME

# typing costs the agent's cold start milliseconds; the annotations are strings (from
# __future__), so only type checkers need these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Send = Callable[[bytes], None]

# After the leader exits, keep reading output this long from children that still hold the pipes
# (a backgrounded `server &` without redirects), then let them go.
LEADER_EXIT_DRAIN_S = 0.1
DRAIN_HARD_CAP_S = 2.0
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": HOME,
    "LANG": "C.UTF-8",
    "TERM": "xterm-256color",
}


class ExecSpawnError(Exception):
    pass


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Execution:
    """One exec on one channel. run() blocks its own thread until the command is done."""

    def __init__(self, send: Send, channel: int, req: dict[str, Any]) -> None:
        self.send = send
        self.channel = channel
        self.req = req
        self.credit = Credit()
        self.inbox = Inbox()
        self.proc: subprocess.Popen | None = None
        self.cancelled = False
        self._lock = threading.Lock()

    # --- called from the connection's reader thread ---
    def on_stdin(self, data: bytes) -> None:
        self.inbox.put(data if data else None)

    def on_control(self, msg: dict[str, Any]) -> None:
        with self._lock:
            proc = self.proc
        if proc is None:
            if msg.get("cancel"):
                self.cancelled = True
            return
        if msg.get("cancel"):
            self.cancelled = True
            _killpg(proc.pid, signal.SIGKILL)
        elif "signal" in msg:
            sig = int(msg["signal"])
            if msg.get("group", True):
                _killpg(proc.pid, sig)
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    def on_connection_lost(self) -> None:
        self.credit.close()
        self.inbox.close()
        self.on_control({"cancel": True})

    # --- the exec's own thread ---
    def _argv(self) -> list[str]:
        argv = self.req.get("argv")
        if argv:
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ExecSpawnError("argv must be a list of strings")
            return argv
        cmd = self.req.get("cmd")
        if not isinstance(cmd, str):
            raise ExecSpawnError("exec needs argv or cmd")
        return ["/bin/sh", "-c", cmd]

    def spawn(self) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(BASE_ENV)
        env.update({str(k): str(v) for k, v in (self.req.get("env") or {}).items()})
        cwd = self.req.get("cwd") or (HOME if os.path.isdir(HOME) else "/")
        stdin = subprocess.PIPE if self.req.get("stdin") else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                self._argv(),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ExecSpawnError(f"{exc.strerror}: {exc.filename or self._argv()[0]}") from None
        with self._lock:
            self.proc = proc
        if self.cancelled:
            _killpg(proc.pid, signal.SIGKILL)
        return proc

    def _pump_stdin(self, proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        broken = False
        while True:
            chunk = self.inbox.get()
            if not chunk:
                break
            if not broken:
                try:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError:
                    broken = True  # the command stopped reading; drop the rest
            try:
                self.send(p.encode_window(self.channel, len(chunk)))
            except OSError:
                break
        with contextlib.suppress(OSError):
            proc.stdin.close()

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        proc = self.spawn()
        self.send(p.encode_json(p.EVENT, self.channel, {"event": "start", "pid": proc.pid}))
        if proc.stdin is not None:
            threading.Thread(target=self._pump_stdin, args=(proc,), daemon=True).start()
        timeout = self.req.get("timeout")
        deadline = start + float(timeout) if timeout else None
        max_output = self.req.get("max_output")
        budget = [int(max_output) if max_output is not None else -1]
        truncated = [False]
        timed_out = False

        def forward(ftype: int, data: bytes) -> bool:
            """Send data within the output budget and credit; False once the deadline passed."""
            if budget[0] >= 0:
                if len(data) > budget[0]:
                    data = data[: budget[0]]
                    truncated[0] = True
                budget[0] -= len(data)
            view = memoryview(data)
            while view:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                n = self.credit.take(len(view), wait)
                if n == 0:
                    return False
                self.send(p.encode(ftype, self.channel, bytes(view[:n])))
                view = view[n:]
            return True

        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, p.STDOUT)
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, p.STDERR)
        pidfd = -1
        try:
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, 0)
        except (AttributeError, OSError):
            pass
        open_pipes = 2
        drain_until: float | None = None
        try:
            while open_pipes:
                now = time.monotonic()
                limits = [t for t in (deadline, drain_until) if t is not None]
                if pidfd < 0 and drain_until is None:
                    limits.append(now + 0.05)  # no pidfd: poll the leader
                wait = max(0.0, min(limits) - now) if limits else None
                events = sel.select(wait)
                now = time.monotonic()
                if deadline is not None and now >= deadline and not timed_out:
                    timed_out = True
                    _killpg(proc.pid, signal.SIGKILL)
                    drain_until = now + LEADER_EXIT_DRAIN_S
                    deadline = None
                for key, _ in events:
                    if key.data == 0:
                        sel.unregister(pidfd)
                        drain_until = now + LEADER_EXIT_DRAIN_S
                        continue
                    data = os.read(key.fd, p.CHUNK_SIZE)
                    if not data:
                        sel.unregister(key.fd)
                        open_pipes -= 1
                    elif not forward(key.data, data) and not timed_out:
                        timed_out = True
                        _killpg(proc.pid, signal.SIGKILL)
                        drain_until = time.monotonic() + LEADER_EXIT_DRAIN_S
                        deadline = None
                if pidfd < 0 and drain_until is None and proc.poll() is not None:
                    drain_until = time.monotonic() + LEADER_EXIT_DRAIN_S
                now = time.monotonic()
                # After the leader exits: idle pipes end the call; a child that keeps writing
                # is cut off after a grace.
                if (
                    drain_until is not None
                    and now >= drain_until
                    and (not events or now >= drain_until + DRAIN_HARD_CAP_S)
                ):
                    break
            rc = proc.wait()
        finally:
            sel.close()
            if pidfd >= 0:
                os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()
            if timed_out or self.cancelled:
                _killpg(proc.pid, signal.SIGKILL)
        self.inbox.close()
        return {
            "exit_code": rc if rc >= 0 else 128 - rc,
            "signal": -rc if rc < 0 else None,
            "timed_out": timed_out,
            "cancelled": self.cancelled,
            "truncated": truncated[0],
            "duration_ms": round((time.monotonic() - start) * 1000, 3),
        }


def handle_exec(send: Send, execution: Execution) -> None:
    try:
        result = execution.run()
        result["ok"] = True
    except ExecSpawnError as exc:
        result = {"ok": False, "error": {"code": p.E_SPAWN, "message": str(exc)}}
    except ChannelClosed:
        return
    with contextlib.suppress(OSError):
        send(p.encode_json(p.RESPONSE, execution.channel, result))
