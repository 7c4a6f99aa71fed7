"""Calls that outlive one answer: a file read chunk by chunk, and a running command's events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

from forkyard.guest import protocol as p
from forkyard.node.agent_client.channel import READ_IDLE_TIMEOUT_S, _Call, _check
from forkyard.node.agent_client.results import ExecEvent
from forkyard.node.errors import AgentUnavailable

if TYPE_CHECKING:
    from forkyard.node.agent_client.client import AgentClient


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
