"""File watching with inotify (op `watch`), through ctypes: the standard library has no binding.

Request: {"op": "watch", "path": "/root", "recursive": false}. Once the watches are set, an
EVENT {"event": "start", "path": <resolved>} says so; then each change is one JSON line in
STDOUT data (paced by the client's credit): {"type": "created" | "modified" | "deleted" |
"moved" | "overflow", "path", "is_dir", "from"?}. Paths are the instance's own. A CONTROL
{"cancel": true} ends the watch; so does the watched directory going away.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import struct

from . import files
from . import protocol as p
from .channel import ChannelClosed, Credit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Send = Callable[[bytes], None]

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
MAX_WATCHES = 8192  # directories under one recursive watch; the kernel's default is 8192 too
POLL_S = 0.5


class Inotify:
    """An inotify instance: watch descriptors for directories, raw events out."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self.paths: dict[int, str] = {}

    def add(self, path: str, mask: int) -> int:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        self.paths[wd] = path
        return int(wd)

    def remove_tree(self, path: str) -> None:
        """Stop watching `path` and every directory under it (the kernel answers IN_IGNORED
        for each, after which their numbers are unknown here)."""
        below = path + "/"
        for wd, watched in list(self.paths.items()):
            if watched == path or watched.startswith(below):
                self.libc.inotify_rm_watch(self.fd, wd)
                del self.paths[wd]

    def read(self) -> list[tuple[int, int, int, str]]:
        try:
            buf = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        out = []
        i = 0
        while i + EVENT_HEADER.size <= len(buf):
            wd, mask, cookie, length = EVENT_HEADER.unpack_from(buf, i)
            i += EVENT_HEADER.size
            name = buf[i : i + length].split(b"\0", 1)[0]
            i += length
            out.append((wd, mask, cookie, os.fsdecode(name)))
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Watch:
    """One watch on one channel; serve() blocks its own thread until cancelled."""

    def __init__(self, send: Send, channel: int, req: dict[str, Any]) -> None:
        self.send = send
        self.channel = channel
        self.req = req
        self.credit = Credit()
        self.cancelled = False

    def on_stdin(self, data: bytes) -> None:
        pass

    def on_control(self, msg: dict[str, Any]) -> None:
        if msg.get("cancel"):
            self.cancelled = True

    def on_connection_lost(self) -> None:
        self.cancelled = True
        self.credit.close()

    def serve(self) -> None:
        try:
            body = self.run()
            body["ok"] = True
        except files.OpError as exc:
            body = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        except OSError as exc:
            err = files.op_error(exc)
            body = {"ok": False, "error": {"code": err.code, "message": err.message}}
        except ChannelClosed:
            return
        with contextlib.suppress(OSError, ChannelClosed):
            self.send(p.encode_json(p.RESPONSE, self.channel, body))

    def _add_tree(self, ino: Inotify, root: str, recursive: bool) -> None:
        ino.add(root, MASK | IN_ONLYDIR)
        if not recursive:
            return
        for dirpath, dirnames, _ in os.walk(root):
            for name in dirnames:
                if len(ino.paths) >= MAX_WATCHES:
                    return
                with contextlib.suppress(OSError):  # gone already, or not ours to read
                    ino.add(os.path.join(dirpath, name), MASK | IN_ONLYDIR)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        view = memoryview(data)
        while view:
            n = self.credit.take(min(len(view), p.CHUNK_SIZE))
            self.send(p.encode(p.STDOUT, self.channel, bytes(view[:n])))
            view = view[n:]

    def run(self) -> dict[str, Any]:
        root = files.resolve(self.req.get("path") or files.HOME)
        recursive = bool(self.req.get("recursive"))
        if not os.path.isdir(root):
            os.stat(root)  # not found -> not_found
            raise files.OpError(p.E_NOT_A_DIRECTORY, "not a directory: " + root)
        ino = Inotify()
        try:
            self._add_tree(ino, root, recursive)
            self.send(p.encode_json(p.EVENT, self.channel, {"event": "start", "path": root}))
            sent = 0
            while not self.cancelled:
                ready, _, _ = select.select([ino.fd], [], [], POLL_S)
                if not ready:
                    continue
                batch, done = self._translate(ino, root, recursive, ino.read())
                if batch:
                    self._emit(batch)
                    sent += len(batch)
                if done:
                    break
            return {"events": sent}
        finally:
            ino.close()

    def _translate(
        self, ino: Inotify, root: str, recursive: bool, raw: list[tuple[int, int, int, str]]
    ) -> tuple[list[dict[str, Any]], bool]:
        out: list[dict[str, Any]] = []
        moved_from: dict[int, dict[str, Any]] = {}
        done = False
        for wd, mask, cookie, name in raw:
            if mask & IN_Q_OVERFLOW:
                out.append({"type": "overflow", "path": root, "is_dir": True})
                continue
            base = ino.paths.get(wd)
            if base is None:
                continue
            if mask & IN_IGNORED:
                ino.paths.pop(wd, None)
                continue
            is_dir = bool(mask & IN_ISDIR)
            path = os.path.join(base, name) if name else base
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if base == root:
                    kind = "deleted" if mask & IN_DELETE_SELF else "moved"
                    out.append({"type": kind, "path": root, "is_dir": True})
                    done = True
                continue  # a subdirectory's own removal is reported by its parent
            if mask & IN_CREATE:
                out.append({"type": "created", "path": path, "is_dir": is_dir})
                if is_dir and recursive and len(ino.paths) < MAX_WATCHES:
                    with contextlib.suppress(OSError):
                        self._add_tree(ino, path, True)
            elif mask & (IN_MODIFY | IN_CLOSE_WRITE):
                event = {"type": "modified", "path": path, "is_dir": is_dir}
                if not out or out[-1] != event:  # one write burst, one event
                    out.append(event)
            elif mask & IN_DELETE:
                out.append({"type": "deleted", "path": path, "is_dir": is_dir})
            elif mask & IN_MOVED_FROM:
                # A directory's watches follow its inode, not its name: moved out of the tree,
                # they would go on reporting what happens there under the name it had here.
                # So they go now; if the move ends inside the tree (its IN_MOVED_TO comes next),
                # the directory is watched again under its new name.
                if is_dir:
                    ino.remove_tree(path)
                event = {"type": "deleted", "path": path, "is_dir": is_dir}
                moved_from[cookie] = event  # becomes `moved` if its other half follows
                out.append(event)
            elif mask & IN_MOVED_TO:
                origin = moved_from.pop(cookie, None)
                if origin is not None:
                    origin.update(type="moved", path=path, **{"from": origin["path"]})
                else:
                    out.append({"type": "created", "path": path, "is_dir": is_dir})
                if is_dir and recursive and len(ino.paths) < MAX_WATCHES:
                    with contextlib.suppress(OSError):
                        self._add_tree(ino, path, True)
        return out, done
