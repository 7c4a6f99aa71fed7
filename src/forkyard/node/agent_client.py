"""Async client for the guest agent: one stream, many concurrent calls multiplexed on channels."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from forkyard.guest import protocol as p
from forkyard.node.errors import AgentOperationError, AgentUnavailable

DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024
DEFAULT_MAX_READ = 64 * 1024 * 1024  # a whole file read into memory at most
# A call with a timeout gets this much extra before the client asks whether the agent is alive.
AGENT_GRACE_S = 5.0
PING_TIMEOUT_S = 2.0

Command = str | Sequence[str]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    duration_ms: float
    signal: int | None = None


@dataclass(frozen=True)
class ExecEvent:
    type: Literal["start", "stdout", "stderr", "exit"]
    data: bytes = b""
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float | None = None


@dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    target: str | None = None

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> FileInfo:
        return cls(
            name=d["name"],
            path=d["path"],
            type=d["type"],
            size=d["size"],
            mode=d["mode"],
            mtime=d["mtime"],
            target=d.get("target"),
        )


@dataclass(frozen=True)
class EditResult:
    """count: occurrences of old_str found; replaced: how many were replaced (0 = unchanged)."""

    count: int
    replaced: int

    @property
    def applied(self) -> bool:
        return self.replaced > 0


# A channel carries a start event and a response; more than this many unread JSON frames on one
# call is an agent flooding the node.
MAX_QUEUED_CONTROL_FRAMES = 64
# How long a file read waits for the agent's next frame.
READ_IDLE_TIMEOUT_S = 60.0


class _Frames:
    """A call's frames not yet taken, bounded whatever the agent sends: data bytes by the
    window (the agent may have at most INITIAL_WINDOW ungranted bytes in flight, so more is a
    protocol violation), the number of data frames by merging adjacent frames of one type (a
    flood of one-byte frames costs no more than its bytes), and JSON frames by count."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[int, bytes] | BaseException] = collections.deque()
        self._ready = asyncio.Event()
        self.ungranted = 0  # data bytes received and not yet granted back
        self._controls = 0

    def put_data(self, ftype: int, payload: bytes) -> None:
        self.ungranted += len(payload)
        if self.ungranted > p.INITIAL_WINDOW:
            raise p.ProtocolError("the agent sent past its window")
        tail = self._items[-1] if self._items else None
        if (
            isinstance(tail, tuple)
            and tail[0] == ftype
            and len(tail[1]) + len(payload) <= p.CHUNK_SIZE
        ):
            self._items[-1] = (ftype, tail[1] + payload)
        else:
            self._items.append((ftype, payload))
        self._ready.set()

    def put(self, item: tuple[int, bytes] | BaseException) -> None:
        if isinstance(item, tuple):
            self._controls += 1
            if self._controls > MAX_QUEUED_CONTROL_FRAMES:
                raise p.ProtocolError("the agent flooded a call with control frames")
        self._items.append(item)
        self._ready.set()

    async def get(self) -> tuple[int, bytes] | BaseException:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, tuple) and item[0] not in p.DATA_TYPES:
            self._controls -= 1
        return item


@dataclass
class _Call:
    channel: int
    frames: _Frames = field(default_factory=_Frames)
    credit: int = p.INITIAL_WINDOW
    credit_changed: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None


def _exec_request(
    cmd: Command,
    cwd: str | None,
    env: dict[str, str] | None,
    timeout: float | None,
    stdin: bool,
    max_output: int | None,
) -> dict[str, Any]:
    req: dict[str, Any] = {"op": "exec", "stdin": stdin}
    if isinstance(cmd, str):
        req["cmd"] = cmd
    else:
        req["argv"] = list(cmd)
    if cwd is not None:
        req["cwd"] = cwd
    if env:
        req["env"] = env
    if timeout is not None:
        req["timeout"] = timeout
    if max_output is not None:
        req["max_output"] = max_output
    return req


@contextlib.contextmanager
def short_socket_path(socket_path: str) -> Iterator[str]:
    """A name for `socket_path` that fits a unix socket address (107 bytes; deep data dirs
    exceed it): while open, a /proc/self/fd path through an O_PATH fd of its directory. For
    both binding and connecting."""
    if len(socket_path.encode()) <= 100:
        yield socket_path
        return
    head, _, name = socket_path.rpartition("/")
    dir_fd = os.open(head, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{dir_fd}/{name}"
    finally:
        os.close(dir_fd)


class AgentClient:
    """A connection to one guest agent. Safe for many concurrent calls from one event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._calls: dict[int, _Call] = {}
        self._channels = itertools.count(1)
        self._closed: BaseException | None = None
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, socket_path: str, *, timeout: float = 5.0) -> AgentClient:
        try:
            with short_socket_path(socket_path) as path:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(path, limit=2 * p.MAX_PAYLOAD), timeout
                )
        except (OSError, TimeoutError) as exc:
            raise AgentUnavailable(f"cannot connect to agent at {socket_path}: {exc}") from None
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        self._fail_all(AgentUnavailable("agent connection closed"))
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._read_task.cancel()
        with contextlib.suppress(BaseException):
            await self._read_task

    # --- plumbing ---
    async def _read_loop(self) -> None:
        reader = self._reader
        try:
            while True:
                header = await reader.readexactly(p.HEADER_SIZE)
                length, ftype, channel = p.decode_header(header)
                payload = await reader.readexactly(length) if length else b""
                call = self._calls.get(channel)
                if call is None:
                    continue
                if ftype == p.WINDOW:
                    call.credit += p.decode_window(payload)
                    call.credit_changed.set()
                elif ftype in p.DATA_TYPES:
                    call.frames.put_data(ftype, payload)
                else:
                    call.frames.put((ftype, payload))
        except (asyncio.IncompleteReadError, OSError, p.ProtocolError) as exc:
            self._fail_all(AgentUnavailable(f"agent connection lost: {exc!r}"))

    def _fail_all(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
        for call in list(self._calls.values()):
            call.failed = exc
            call.frames.put(exc)
            call.credit_changed.set()
        self._calls.clear()

    def _write(self, frame: bytes) -> None:
        if self._closed is not None:
            raise AgentUnavailable(str(self._closed))
        self._writer.write(frame)

    async def _send(self, frame: bytes) -> None:
        self._write(frame)
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise AgentUnavailable(f"agent connection lost: {exc!r}") from None

    async def _open(self, req: dict[str, Any]) -> _Call:
        if self._closed is not None:
            raise AgentUnavailable(str(self._closed))
        call = _Call(next(self._channels))
        self._calls[call.channel] = call
        await self._send(p.encode_json(p.REQUEST, call.channel, req))
        return call

    def _finish(self, call: _Call) -> None:
        self._calls.pop(call.channel, None)

    async def _next(self, call: _Call, timeout: float | None = None) -> tuple[int, bytes]:
        item = await asyncio.wait_for(call.frames.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def _grant(self, call: _Call, n: int) -> None:
        call.frames.ungranted -= n
        if n and call.channel in self._calls:
            with contextlib.suppress(AgentUnavailable):
                self._write(p.encode_window(call.channel, n))

    async def _send_data_chunk(self, call: _Call, chunk: bytes) -> None:
        """Send one piece of STDIN data, waiting for the agent's credit as needed."""
        view = memoryview(chunk)
        while view:
            while call.credit <= 0:
                if call.failed is not None:
                    raise call.failed
                call.credit_changed.clear()
                await call.credit_changed.wait()
            n = min(len(view), call.credit, p.CHUNK_SIZE)
            call.credit -= n
            await self._send(p.encode(p.STDIN, call.channel, bytes(view[:n])))
            view = view[n:]

    async def _send_data(self, call: _Call, data: bytes | AsyncIterable[bytes]) -> None:
        """Send data as STDIN frames within the agent's window, then EOF."""
        if isinstance(data, bytes | bytearray | memoryview):
            await self._send_data_chunk(call, bytes(data))
        else:
            async for chunk in data:
                if chunk:
                    await self._send_data_chunk(call, bytes(chunk))
        await self._send(p.encode(p.STDIN, call.channel, b""))

    async def _simple(self, req: dict[str, Any], timeout: float | None = 30.0) -> dict[str, Any]:
        call = await self._open(req)
        try:
            while True:
                try:
                    ftype, payload = await self._next(call, timeout)
                except TimeoutError:
                    raise AgentUnavailable(f"agent did not answer {req['op']!r}") from None
                if ftype == p.RESPONSE:
                    return _check(p.decode_json(payload))
        finally:
            self._finish(call)

    # --- health ---
    async def ping(self, timeout: float = PING_TIMEOUT_S) -> dict[str, Any]:
        """Round trip to the agent; AgentUnavailable if it does not answer within `timeout`."""
        return await self._simple({"op": "ping"}, timeout)

    # --- exec ---
    async def exec(
        self,
        cmd: Command,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
    ) -> ExecResult:
        """Run a command to completion. A str runs via /bin/sh -c; a list is an argv."""
        req = _exec_request(cmd, cwd, env, timeout, stdin is not None, max_output)
        call = await self._open(req)
        out, err = bytearray(), bytearray()
        # The agent caps the output too; the node does not rely on what runs in an instance.
        room = max_output
        truncated = False
        feeder = asyncio.create_task(self._send_data(call, stdin)) if stdin is not None else None
        try:
            while True:
                ftype, payload = await self._next_or_check(call, timeout)
                if ftype in (p.STDOUT, p.STDERR):
                    kept = payload[: max(room, 0)]
                    truncated = truncated or len(kept) < len(payload)
                    room -= len(kept)
                    (out if ftype == p.STDOUT else err).extend(kept)
                    self._grant(call, len(payload))
                elif ftype == p.RESPONSE:
                    r = _check(p.decode_json(payload))
                    return ExecResult(
                        exit_code=r["exit_code"],
                        stdout=bytes(out),
                        stderr=bytes(err),
                        timed_out=r["timed_out"],
                        truncated=bool(r["truncated"]) or truncated,
                        duration_ms=r["duration_ms"],
                        signal=r.get("signal"),
                    )
        except BaseException:
            with contextlib.suppress(AgentUnavailable):
                self._write(p.encode_json(p.CONTROL, call.channel, {"cancel": True}))
            raise
        finally:
            self._finish(call)
            if feeder is not None:
                feeder.cancel()

    async def _next_or_check(self, call: _Call, timeout: float | None) -> tuple[int, bytes]:
        """Next frame; past the call's own timeout plus a grace, make sure the agent lives."""
        if timeout is None:
            return await self._next(call)
        limit = timeout + AGENT_GRACE_S
        while True:
            try:
                return await self._next(call, limit)
            except TimeoutError:
                await self.ping()  # raises AgentUnavailable when the agent is hung
                limit = AGENT_GRACE_S

    def exec_stream(
        self,
        cmd: Command,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bytes | AsyncIterable[bytes] | None = None,
        stdin_pipe: bool = False,
        timeout: float | None = None,
        max_output: int | None = None,
    ) -> ExecStream:
        """Run a command and iterate its events; closing the stream early kills its process group.

        With stdin_pipe=True, feed input with `stream.write(b)` and `stream.close_stdin()`.
        """
        has_stdin = stdin is not None or stdin_pipe
        req = _exec_request(cmd, cwd, env, timeout, has_stdin, max_output)
        return ExecStream(self, req, stdin, timeout)

    # --- files ---
    async def read_file(
        self,
        path: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        max_size: int = DEFAULT_MAX_READ,
    ) -> bytes:
        """A regular file's bytes, whole (at most `max_size`: a larger file is refused with
        `file_too_large` unless a `limit` is given)."""
        buf = bytearray()
        async with await self.read_stream(
            path, offset=offset, limit=limit, max_size=max_size
        ) as chunks:
            async for chunk in chunks:
                buf += chunk
        return bytes(buf)

    async def read_stream(
        self,
        path: str,
        *,
        offset: int = 0,
        limit: int | None = None,
        max_size: int | None = DEFAULT_MAX_READ,
    ) -> FileReader:
        """A regular file's bytes as they arrive. The agent's refusal (not found, not a regular
        file, too large) is raised here, before any byte; see FileReader."""
        req = {"op": "read", "path": path, "offset": offset, "limit": limit}
        if max_size is not None:
            req["max_size"] = max_size
        reader = FileReader(self, await self._open(req))
        try:
            await reader.first()
        except BaseException:
            reader.cancel()
            raise
        return reader

    async def write_file(
        self,
        path: str,
        data: bytes | str | AsyncIterable[bytes],
        *,
        mode: int = 0o644,
        make_parents: bool = True,
        atomic: bool = True,
    ) -> FileInfo:
        """Write a file (atomically by default: a temp file renamed over the target)."""
        if isinstance(data, str):
            data = data.encode()
        req = {
            "op": "write",
            "path": path,
            "mode": mode,
            "make_parents": make_parents,
            "atomic": atomic,
        }
        call = await self._open(req)
        try:
            await self._send_data(call, data)
            while True:
                try:
                    ftype, payload = await self._next(call, 60.0)
                except TimeoutError:
                    raise AgentUnavailable("agent did not answer 'write'") from None
                if ftype == p.RESPONSE:
                    return FileInfo.from_wire(_check(p.decode_json(payload))["entry"])
        finally:
            self._finish(call)

    async def edit_file(
        self, path: str, old_str: str, new_str: str, *, replace_all: bool = False
    ) -> EditResult:
        """Replace old_str once (or everywhere); zero or several matches change nothing."""
        r = await self._simple(
            {
                "op": "edit",
                "path": path,
                "old_str": old_str,
                "new_str": new_str,
                "replace_all": replace_all,
            }
        )
        return EditResult(count=r["count"], replaced=r["replaced"])

    async def list_dir(self, path: str, *, depth: int = 1) -> list[FileInfo]:
        r = await self._simple({"op": "list", "path": path, "depth": depth})
        return [FileInfo.from_wire(e) for e in r["entries"]]

    async def stat(self, path: str) -> FileInfo:
        return FileInfo.from_wire((await self._simple({"op": "stat", "path": path}))["entry"])

    async def mkdir(self, path: str, *, parents: bool = True, mode: int = 0o755) -> FileInfo:
        r = await self._simple({"op": "mkdir", "path": path, "parents": parents, "mode": mode})
        return FileInfo.from_wire(r["entry"])

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._simple({"op": "remove", "path": path, "recursive": recursive})


class FileReader:
    """A file being read from the agent: async iterator of its chunks. A chunk's credit goes
    back to the agent when the next is asked for, so the node holds at most one window of a
    file whatever its size; closing early (or a consumer that goes away) cancels the read."""

    def __init__(self, client: AgentClient, call: _Call) -> None:
        self._client = client
        self._call = call
        self._first: bytes | None = None
        self._done = False

    async def _frame(self) -> tuple[int, bytes]:
        try:
            return await self._client._next(self._call, READ_IDLE_TIMEOUT_S)
        except TimeoutError:
            raise AgentUnavailable("agent did not answer 'read'") from None

    async def first(self) -> None:
        """Wait for the agent's first frame: data, or the answer (an empty file or a refusal)."""
        ftype, payload = await self._frame()
        if ftype == p.STDOUT:
            self._first = payload
        elif ftype == p.RESPONSE:
            self._end(payload)

    def _end(self, payload: bytes) -> None:
        self._done = True
        self._client._finish(self._call)
        _check(p.decode_json(payload))

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            self._client._grant(self._call, len(chunk))
            return chunk
        while not self._done:
            try:
                ftype, payload = await self._frame()
            except BaseException:
                self.cancel()
                raise
            if ftype == p.STDOUT:
                self._client._grant(self._call, len(payload))
                return payload
            if ftype == p.RESPONSE:
                self._end(payload)
        raise StopAsyncIteration

    def cancel(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._client._write(p.encode_json(p.CONTROL, self._call.channel, {"cancel": True}))
        self._client._finish(self._call)

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> FileReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class ExecStream:
    """Async iterator of ExecEvent for one running command (see AgentClient.exec_stream)."""

    def __init__(
        self,
        client: AgentClient,
        req: dict[str, Any],
        stdin: bytes | AsyncIterable[bytes] | None,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._req = req
        self._stdin = stdin
        self._timeout = timeout
        self._call: _Call | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._done = False
        self.pid: int | None = None
        self.started_at = time.monotonic()

    async def _ensure_open(self) -> _Call:
        if self._call is None:
            self._call = await self._client._open(self._req)
            if self._stdin is not None:
                self._feeder = asyncio.create_task(self._client._send_data(self._call, self._stdin))
        return self._call

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        return self

    async def __anext__(self) -> ExecEvent:
        if self._done:
            raise StopAsyncIteration
        call = await self._ensure_open()
        try:
            ftype, payload = await self._client._next_or_check(call, self._timeout)
        except BaseException:
            self._cancel()
            raise
        if ftype in (p.STDOUT, p.STDERR):
            # Credit goes back once the consumer has taken the chunk: a slow reader stalls
            # only this command, by at most one window of buffered output.
            self._client._grant(call, len(payload))
            return ExecEvent("stdout" if ftype == p.STDOUT else "stderr", data=payload)
        if ftype == p.EVENT:
            ev = p.decode_json(payload)
            self.pid = ev.get("pid")
            return ExecEvent("start", pid=self.pid)
        if ftype == p.RESPONSE:
            self._done = True
            self._client._finish(call)
            r = _check(p.decode_json(payload))
            return ExecEvent(
                "exit",
                exit_code=r["exit_code"],
                signal=r.get("signal"),
                timed_out=r["timed_out"],
                truncated=r["truncated"],
                duration_ms=r["duration_ms"],
            )
        return await self.__anext__()

    async def write(self, data: bytes) -> None:
        """Feed stdin (exec_stream(..., stdin_pipe=True))."""
        call = await self._ensure_open()
        await self._client._send_data_chunk(call, data)

    async def close_stdin(self) -> None:
        call = await self._ensure_open()
        await self._client._send(p.encode(p.STDIN, call.channel, b""))

    async def signal(self, signum: int, *, group: bool = True) -> None:
        call = await self._ensure_open()
        await self._client._send(
            p.encode_json(p.CONTROL, call.channel, {"signal": signum, "group": group})
        )

    async def kill(self) -> None:
        """SIGKILL the command's whole process group."""
        call = await self._ensure_open()
        await self._client._send(p.encode_json(p.CONTROL, call.channel, {"cancel": True}))

    def _cancel(self) -> None:
        if self._done or self._call is None:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._client._write(p.encode_json(p.CONTROL, self._call.channel, {"cancel": True}))
        self._client._finish(self._call)
        if self._feeder is not None:
            self._feeder.cancel()

    async def aclose(self) -> None:
        self._cancel()

    async def __aenter__(self) -> ExecStream:
        await self._ensure_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cancel()

    def __del__(self) -> None:
        self._cancel()


def _check(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("ok"):
        return body
    err = body.get("error") or {}
    raise AgentOperationError(err.get("code", p.E_INTERNAL), err.get("message", "agent error"))
