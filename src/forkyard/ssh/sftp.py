"""SFTP (and so scp) on an instance, served by the gateway from the files operations: reads in
ranges and writes in runs through the node, and the metadata calls (stat, list, mkdir,
rename, chmod ...) as one small python3 program run inside the instance per call."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import posixpath
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncssh

from forkyard.compute.node_client import NodeClient, node_clients
from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.ssh import access

if TYPE_CHECKING:
    from forkyard.ssh.gateway import SshGateway

HOME = "/root"
READ_MAX = 1024 * 1024  # one SFTP read asks for far less (32-256 KiB)
# What a handle gathers of consecutive writes before they go to the node as one write at
# their offset (clients send 32-256 KiB each): a file of any size passes through a bounded
# buffer, and one run is written while the next is gathered.
WRITE_RUN = 4 * 1024 * 1024

# How the helper below is started: isolated (-I: no PYTHON* variables, no user site, not the
# working directory on its path) and without `site` (-S): the instance's own packages and
# settings cannot change what it does, and it starts a little sooner (ADR 0014). The
# standard library is all it needs.
PYTHON = ("python3", "-I", "-S", "-c")
# Runs inside the instance with the request as its one argument; prints one JSON answer.
HELPER = r"""
import json, os, sys
r = json.loads(sys.argv[1])
def st(s):
    return {"mode": s.st_mode, "size": s.st_size, "uid": s.st_uid, "gid": s.st_gid,
            "atime": int(s.st_atime), "mtime": int(s.st_mtime)}
try:
    op, p = r["op"], r.get("path")
    out = None
    if op == "stat": out = st(os.stat(p))
    elif op == "lstat": out = st(os.lstat(p))
    elif op == "list":
        out = []
        with os.scandir(p) as it:
            for e in it:
                try: out.append([e.name, st(e.stat(follow_symlinks=False))])
                except OSError: pass
    elif op == "mkdir": os.mkdir(p, r.get("mode") or 0o755)
    elif op == "rmdir": os.rmdir(p)
    elif op == "remove": os.remove(p)
    elif op == "rename":
        if not r.get("replace") and os.path.lexists(r["to"]):
            raise FileExistsError(17, "File exists")
        os.rename(p, r["to"])
    elif op == "chmod": os.chmod(p, r["mode"])
    elif op == "utime": os.utime(p, (r["atime"], r["mtime"]))
    elif op == "truncate": os.truncate(p, r["size"])
    elif op == "readlink": out = os.readlink(p)
    elif op == "symlink": os.symlink(r["target"], p)
    print(json.dumps({"ok": out}))
except OSError as e:
    print(json.dumps({"errno": e.errno, "message": e.strerror or ""}))
"""

_ERRORS: dict[
    int,
    type[
        asyncssh.SFTPNoSuchFile
        | asyncssh.SFTPPermissionDenied
        | asyncssh.SFTPFileAlreadyExists
        | asyncssh.SFTPDirNotEmpty
        | asyncssh.SFTPFailure
    ],
] = {
    errno.ENOENT: asyncssh.SFTPNoSuchFile,
    errno.EACCES: asyncssh.SFTPPermissionDenied,
    errno.EPERM: asyncssh.SFTPPermissionDenied,
    errno.EEXIST: asyncssh.SFTPFileAlreadyExists,
    errno.ENOTEMPTY: asyncssh.SFTPDirNotEmpty,
}
_CODES: dict[
    str,
    type[
        asyncssh.SFTPNoSuchFile
        | asyncssh.SFTPPermissionDenied
        | asyncssh.SFTPFileAlreadyExists
        | asyncssh.SFTPFailure
    ],
] = {
    "not_found": asyncssh.SFTPNoSuchFile,
    "permission_denied": asyncssh.SFTPPermissionDenied,
    "already_exists": asyncssh.SFTPFileAlreadyExists,
}


def _decode(path: bytes) -> str:
    return os.fsdecode(path)


def _attrs(d: dict[str, Any]) -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(
        size=d["size"],
        uid=d["uid"],
        gid=d["gid"],
        permissions=d["mode"],
        atime=d["atime"],
        mtime=d["mtime"],
    )


class _Handle:
    def __init__(self, path: str, writing: bool) -> None:
        self.path = path
        self.writing = writing
        # Writing: the run being gathered (consecutive bytes from run_offset), and the write
        # of the one before it, still going to the node.
        self.run = bytearray()
        self.run_offset = 0
        self.sending: asyncio.Future[None] | None = None
        # Opened to append: where the next write goes, whatever offset it names (O_APPEND).
        self.append_at: int | None = None
        # Opened to be made or emptied: the mode to make it with, until its first write does.
        self.make_mode: int | None = None


class InstanceSftp(asyncssh.SFTPServer):
    """One SFTP session on one instance. Paths are the instance's own; relative ones start at
    /root."""

    def __init__(self, chan: Any, gateway: SshGateway, instance_id: str) -> None:
        super().__init__(chan)
        self.gateway = gateway
        self.instance_id = instance_id
        self._node: NodeClient | None = None

    async def _client(self) -> NodeClient:
        """The instance's node, found at the session's first request and kept for the rest.

        From the connection's sign-in (`access.sign_in`), which its key check filled moments
        before: a request then costs its one node round trip and no database query (scp and
        sftp open a session per command). The triggers that empty that entry when the instance
        stops, moves or changes org make a session opened afterwards look again, as a
        command's session does (gateway `_run`)."""
        if self._node is None:
            server = (await access.sign_in(self.gateway.db, self.instance_id)).server
            if server is None:
                raise asyncssh.SFTPFailure("the instance is not running")
            self._node = node_clients.for_server(server, self.gateway.settings.secret_key)
        return self._node

    async def _helper(self, **request: Any) -> Any:
        node = await self._client()
        try:
            answer = await node.exec(
                self.instance_id,
                {"command": [*PYTHON, HELPER, json.dumps(request)], "timeout_s": 30},
                timeout=40,
            )
        except ForkyardError as exc:
            raise asyncssh.SFTPFailure(exc.message) from None
        try:
            out = json.loads(base64.b64decode(answer["stdout_b64"]))
        except ValueError:
            raise asyncssh.SFTPFailure("the instance could not do that") from None
        if "errno" in out:
            raise _ERRORS.get(out["errno"], asyncssh.SFTPFailure)(out["message"] or "failed")
        return out["ok"]

    def exit(self) -> None:
        # sshd's sftp-server exits 0 and the client reads that status; scp fails without it.
        with contextlib.suppress(Exception):
            self.channel.exit(0)

    # --- paths and metadata ---
    def realpath(self, path: bytes) -> bytes:
        text = _decode(path) or "."
        return os.fsencode(posixpath.normpath(posixpath.join(HOME, text)))

    def _p(self, path: bytes) -> str:
        return os.fsdecode(self.realpath(path))

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return _attrs(await self._helper(op="stat", path=self._p(path)))

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return _attrs(await self._helper(op="lstat", path=self._p(path)))

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        entries = await self._helper(op="list", path=self._p(path))
        for name, st in entries:
            yield asyncssh.SFTPName(os.fsencode(name), attrs=_attrs(st))

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        p = self._p(path)
        if attrs.size is not None:
            await self._helper(op="truncate", path=p, size=attrs.size)
        if attrs.permissions is not None:
            await self._helper(op="chmod", path=p, mode=attrs.permissions & 0o7777)
        if attrs.atime is not None and attrs.mtime is not None:
            await self._helper(op="utime", path=p, atime=attrs.atime, mtime=attrs.mtime)

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        mode = (attrs.permissions or 0o755) & 0o7777
        await self._helper(op="mkdir", path=self._p(path), mode=mode)

    async def rmdir(self, path: bytes) -> None:
        await self._helper(op="rmdir", path=self._p(path))

    async def remove(self, path: bytes) -> None:
        await self._helper(op="remove", path=self._p(path))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._helper(op="rename", path=self._p(oldpath), to=self._p(newpath))

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._helper(op="rename", path=self._p(oldpath), to=self._p(newpath), replace=True)

    async def readlink(self, path: bytes) -> bytes:
        return os.fsencode(await self._helper(op="readlink", path=self._p(path)))

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        await self._helper(op="symlink", path=self._p(newpath), target=_decode(oldpath))

    # --- files ---
    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> _Handle:
        """Opened for writing, writes then go in runs. A file opened to be made or emptied
        (scp's and sftp's put) is, with its first run, so that a small put is one node write
        (sshd's server makes it at open: a stat by path before the first write here still
        sees what was there)."""
        p = self._p(path)
        if not pflags & asyncssh.FXF_WRITE:
            await self._check_readable(p)
            return _Handle(p, False)
        mode = (attrs.permissions or 0o644) & 0o7777
        if pflags & asyncssh.FXF_TRUNC and not pflags & asyncssh.FXF_EXCL:
            handle = _Handle(p, True)
            handle.make_mode = mode
            return handle
        size = 0
        try:
            size = (await self._helper(op="stat", path=p))["size"]
        except asyncssh.SFTPNoSuchFile:
            if not pflags & asyncssh.FXF_CREAT:
                raise
            await self._write(p, b"", mode=mode, offset=None)
        else:
            if pflags & asyncssh.FXF_EXCL:
                raise asyncssh.SFTPFileAlreadyExists("file exists")
        handle = _Handle(p, True)
        if pflags & asyncssh.FXF_APPEND:
            handle.append_at = size
        return handle

    async def _check_readable(self, path: str) -> None:
        """Refuse at open what is missing, forbidden or a directory: a read of no bytes, so one
        node round trip with no program started in the instance (the stat it replaces ran
        python3, most of an SFTP get). Anything else that is no regular file (a FIFO, a
        device) opens as before, and its reads are refused."""
        node = await self._client()
        body = c.ReadFileIn(path=path, offset=0, limit=0)
        try:
            async for _ in await node.read_file(self.instance_id, body):
                pass
        except ForkyardError as exc:
            if exc.code == "not_a_regular_file":
                return
            if exc.code == "is_a_directory":
                raise asyncssh.SFTPFailure("is a directory") from None
            raise _CODES.get(exc.code, asyncssh.SFTPFailure)(exc.message) from None

    async def _read(self, path: str, offset: int, size: int | None) -> bytes:
        node = await self._client()
        settings = self.gateway.settings
        body = c.ReadFileIn(
            path=path, offset=offset, limit=size, max_size=settings.max_upload_body_bytes
        )
        try:
            chunks = await node.read_file(self.instance_id, body)
            return b"".join([chunk async for chunk in chunks])
        except ForkyardError as exc:
            raise _CODES.get(exc.code, asyncssh.SFTPFailure)(exc.message) from None

    async def _write(self, path: str, data: bytes, *, mode: int, offset: int | None) -> None:
        """Write a whole file (offset None: atomically replaced), or bytes into it at offset."""
        node = await self._client()
        try:
            await node.write_file(
                self.instance_id, path, data, mode=mode, make_parents=False, offset=offset
            )
        except ForkyardError as exc:
            raise _CODES.get(exc.code, asyncssh.SFTPFailure)(exc.message) from None

    async def _send_run(self, handle: _Handle) -> None:
        """Start writing the gathered run at its offset once the run before it is in (its
        failure is then the answer to the request that sends the next, or to the close)."""
        await self._settle(handle)
        data, offset = bytes(handle.run), handle.run_offset
        handle.run.clear()
        if handle.make_mode is not None:
            mode, handle.make_mode = handle.make_mode, None
            if data and offset == 0:  # the first run is the new file (atomically replaced)
                write = self._write(handle.path, data, mode=mode, offset=None)
                handle.sending = asyncio.ensure_future(write)
                return
            await self._write(handle.path, b"", mode=mode, offset=None)
        if data:
            write = self._write(handle.path, data, mode=0o644, offset=offset)
            handle.sending = asyncio.ensure_future(write)

    async def _settle(self, handle: _Handle) -> None:
        """Wait for the run being written; raise what it met."""
        sending, handle.sending = handle.sending, None
        if sending is not None:
            await sending

    async def _flush(self, handle: _Handle) -> None:
        """Everything written through the handle so far is in the file."""
        await self._send_run(handle)
        await self._settle(handle)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _Handle)
        if file_obj.writing:
            await self._flush(file_obj)
        return await self._read(file_obj.path, offset, min(size, READ_MAX))

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        assert isinstance(file_obj, _Handle)
        if not file_obj.writing:
            raise asyncssh.SFTPPermissionDenied("opened for reading")
        if file_obj.append_at is not None:
            offset = file_obj.append_at
            file_obj.append_at += len(data)
        run = file_obj.run
        if run and offset != file_obj.run_offset + len(run):  # not where the run ends
            await self._send_run(file_obj)
        if not run:
            file_obj.run_offset = offset
        run += data
        if len(run) >= WRITE_RUN:
            await self._send_run(file_obj)
        return len(data)

    async def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        assert isinstance(file_obj, _Handle)
        if file_obj.writing:
            await self._flush(file_obj)
        return await self.stat(os.fsencode(file_obj.path))

    async def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        assert isinstance(file_obj, _Handle)
        if file_obj.writing:
            await self._flush(file_obj)
        await self.setstat(os.fsencode(file_obj.path), attrs)

    async def close(self, file_obj: object) -> None:
        assert isinstance(file_obj, _Handle)
        if file_obj.writing:
            await self._flush(file_obj)
