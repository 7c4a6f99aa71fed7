"""The agent server: accepts connections and serves the framed protocol, a thread per connection.

Run inside the instance as `python3 -I -S -c 'import sys; sys.path.insert(0, DIR);
from forkyard_guest.agent import main; main()' --listen-fd FD` (the node does this, with
a listening socket it bound), or
`python3 -m forkyard.guest --socket PATH` from a source tree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
import threading
import time

from . import files, lsp
from . import protocol as p
from .channel import ChannelClosed, Credit, Inbox
from .execution import Execution, handle_exec
from .terminal import PtySession
from .watch import Watch

# typing costs the agent's cold start milliseconds; the annotations are strings (from
# __future__), so only type checkers need these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STARTED = time.monotonic()
VERSION = "0.1.0"


class Connection:
    """One client stream. Reads frames on its own thread; each request runs on another thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self.handlers: dict[int, Any] = {}
        self.closed = False

    def send(self, frame: bytes) -> None:
        if self.closed:
            raise ChannelClosed()
        with self._send_lock:
            self.sock.sendall(frame)

    def respond(self, channel: int, body: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ChannelClosed):
            self.send(p.encode_json(p.RESPONSE, channel, body))

    def serve(self) -> None:
        decoder = p.Decoder()
        try:
            while True:
                data = self.sock.recv(256 * 1024)
                if not data:
                    break
                decoder.feed(data)
                while True:
                    frame = decoder.next_frame()
                    if frame is None:
                        break
                    self.dispatch(*frame)
        except (OSError, p.ProtocolError):
            pass
        finally:
            self.closed = True
            with self._lock:
                handlers = list(self.handlers.values())
                self.handlers.clear()
            for h in handlers:
                h.on_connection_lost()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    def dispatch(self, ftype: int, channel: int, payload: bytes) -> None:
        if ftype == p.REQUEST:
            self.start_request(channel, p.decode_json(payload))
            return
        with self._lock:
            handler = self.handlers.get(channel)
        if handler is None:
            return  # late frame for a finished call
        if ftype == p.STDIN:
            handler.on_stdin(payload)
        elif ftype == p.WINDOW:
            handler.credit.grant(p.decode_window(payload))
        elif ftype == p.CONTROL:
            handler.on_control(p.decode_json(payload))

    def start_request(self, channel: int, req: dict[str, Any]) -> None:
        op = req.get("op")
        if op == "ping":  # answered inline: it must work even when threads are scarce
            self.respond(channel, dict(ping(), ok=True))
            return
        handler: Any
        if op == "exec":
            handler = Execution(self.send, channel, req)
            work: Callable[[], None] = functools.partial(handle_exec, self.send, handler)
        elif op in SIMPLE_OPS:
            handler = None
            work = functools.partial(self._simple, channel, op, req)
        elif op in ("read", "write"):
            handler = FileStream(self, channel, req)
            work = handler.run
        elif op in STREAM_OPS:
            handler = STREAM_OPS[op](self.send, channel, req)
            work = handler.serve
        else:
            self.respond(channel, _error(p.E_INVALID, f"unknown op {op!r}"))
            return
        if handler is not None:
            with self._lock:
                self.handlers[channel] = handler
        threading.Thread(
            target=self._run, args=(channel, work), daemon=True, name=f"op-{op}-{channel}"
        ).start()

    def _run(self, channel: int, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a bug must not kill the connection
            self.respond(channel, _error(p.E_INTERNAL, f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self.handlers.pop(channel, None)

    def _simple(self, channel: int, op: str, req: dict[str, Any]) -> None:
        try:
            body = SIMPLE_OPS[op](req)
            body["ok"] = True
        except files.OpError as exc:
            body = _error(exc.code, exc.message)
        self.respond(channel, body)


class FileStream:
    """read: file bytes out as STDOUT frames. write: STDIN frames in until an empty one (EOF)."""

    def __init__(self, conn: Connection, channel: int, req: dict[str, Any]) -> None:
        self.conn = conn
        self.channel = channel
        self.req = req
        self.credit = Credit()
        self.inbox = Inbox()

    def on_stdin(self, data: bytes) -> None:
        self.inbox.put(data if data else None)

    def on_control(self, msg: dict[str, Any]) -> None:
        if msg.get("cancel"):
            self.on_connection_lost()

    def on_connection_lost(self) -> None:
        self.credit.close()
        self.inbox.close()

    def run(self) -> None:
        try:
            body = self._read() if self.req["op"] == "read" else self._write()
            body["ok"] = True
        except files.OpError as exc:
            body = _error(exc.code, exc.message)
        except ChannelClosed:
            return
        self.conn.respond(self.channel, body)

    def _read(self) -> dict[str, Any]:
        f, size, remaining = files.open_for_read(self.req)  # regular files only, bounded
        sent = 0
        try:
            with f:
                while remaining != 0:
                    want = p.CHUNK_SIZE if remaining < 0 else min(p.CHUNK_SIZE, remaining)
                    want = self.credit.take(want)
                    chunk = f.read(want)
                    if not chunk:
                        break
                    self.conn.send(p.encode(p.STDOUT, self.channel, chunk))
                    sent += len(chunk)
                    if remaining > 0:
                        remaining -= len(chunk)
        except OSError as exc:
            raise files.op_error(exc) from None
        return {"size": size, "read": sent}

    def _write(self) -> dict[str, Any]:
        error: files.OpError | None = None
        fd = -1
        try:
            fd, tmp, path, mode = files.open_for_write(self.req)
        except files.OpError as exc:
            error = exc
        written = 0
        while True:  # consume to EOF even after an error, so the channel stays in step
            chunk = self.inbox.get()
            if not chunk:
                break
            if error is None:
                try:
                    files.write_all(fd, chunk)
                    written += len(chunk)
                except OSError as exc:
                    error = files.op_error(exc)
            self.conn.send(p.encode_window(self.channel, len(chunk)))
        if self.conn.closed:
            error = error or files.OpError(p.E_INTERNAL, "connection closed")
        if fd >= 0:
            try:
                files.finish_write(fd, tmp, path, mode, ok=error is None)
            except OSError as exc:
                error = error or files.op_error(exc)
        if error is not None:
            raise error
        try:
            return {"entry": files.info(path), "written": written}
        except OSError as exc:
            raise files.op_error(exc) from None


def ping(req: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "version": VERSION,
        "protocol": p.PROTOCOL_VERSION,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - STARTED, 3),
        "load": load,
        "time": time.time(),
    }


SIMPLE_OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stat": files.do_stat,
    "list": files.do_list,
    "mkdir": files.do_mkdir,
    "remove": files.do_remove,
    "edit": files.do_edit,
    "lsp_servers": lsp.do_lsp_servers,
}


# Long-lived calls with a handler of their own: (send, channel, request) -> .serve() runs on
# the call's thread and sends the answer; on_stdin/on_control/on_connection_lost and .credit
# as FileStream has them.
STREAM_OPS: dict[str, Any] = {
    "pty": PtySession,
    "watch": Watch,
}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def serve_unix(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(128)
    serve(server)


def serve_fd(fd: int) -> None:
    """Serve on a listening socket the node bound and handed over (the way it runs us): the
    socket file lives where nothing inside the instance can see or replace it. Every other
    inherited descriptor is closed first, so no command run here can use one."""
    server = socket.socket(fileno=fd)
    os.closerange(3, fd)
    os.closerange(fd + 1, 65536)
    serve(server)


def serve(server: socket.socket) -> None:
    while True:
        sock, _ = server.accept()
        conn = Connection(sock)
        threading.Thread(target=conn.serve, daemon=True, name="conn").start()


USAGE = "usage: forkyard-guest --socket PATH | --listen-fd FD\n"


def main(argv: list | None = None) -> None:
    # No argparse: importing it costs ~10 ms of every instance's boot.
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("--socket", "--listen-fd"):
        sys.stderr.write(USAGE)
        sys.exit(2)
    os.umask(0o022)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Commands must not inherit the agent's ignored-signal dispositions.
    os.environ.pop("PYTHONPATH", None)
    try:
        if args[0] == "--listen-fd":
            serve_fd(int(args[1]))
        else:
            serve_unix(args[1])
    except KeyboardInterrupt:
        sys.exit(0)
