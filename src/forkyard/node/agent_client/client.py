"""The connection to one guest agent: one stream, many concurrent calls multiplexed on channels."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterable
from typing import Any

from forkyard.guest import protocol as p
from forkyard.node.agent_client.channel import _Call, _check, short_socket_path
from forkyard.node.agent_client.results import (
    AGENT_GRACE_S,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_READ,
    PING_TIMEOUT_S,
    Command,
    EditResult,
    ExecResult,
    FileInfo,
)
from forkyard.node.agent_client.streams import ExecStream, FileReader
from forkyard.node.errors import AgentUnavailable


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
        offset: int | None = None,
    ) -> FileInfo:
        """Write a file (atomically by default: a temp file renamed over the target), or with
        an `offset`, write into it from there (guest files.open_for_write)."""
        if isinstance(data, str):
            data = data.encode()
        req: dict[str, Any] = {
            "op": "write",
            "path": path,
            "mode": mode,
            "make_parents": make_parents,
            "atomic": atomic,
        }
        if offset is not None:
            req["offset"] = offset
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
