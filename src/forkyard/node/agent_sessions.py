"""The node's end of the agent's long-lived calls: a terminal (op `pty`) and a file watch (op
`watch`), on the same multiplexed connection as exec (agent_client/)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from forkyard.guest import protocol as p
from forkyard.node.agent_client import AgentClient, _Call, _check
from forkyard.node.errors import AgentUnavailable

# A watch line longer than this is an agent misbehaving.
MAX_WATCH_LINE = 64 * 1024


class AgentPty:
    """A shell under a terminal inside the instance. Iterate for ("start", pid) / ("output",
    bytes) / ("exit", answer); write keystrokes, resize, signal; close() hangs it up."""

    def __init__(self, client: AgentClient, call: _Call) -> None:
        self._client = client
        self._call = call
        self._done = False

    @classmethod
    async def open(
        cls,
        client: AgentClient,
        *,
        command: str | list[str] | None = None,
        env: dict[str, str] | None = None,
        term: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> AgentPty:
        req: dict[str, Any] = {"op": "pty", "rows": rows, "cols": cols}
        if isinstance(command, str):
            req["cmd"] = command
        elif command:
            req["argv"] = list(command)
        if env:
            req["env"] = env
        if term:
            req["term"] = term
        return cls(client, await client._open(req))

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        while not self._done:
            try:
                ftype, payload = await self._client._next(self._call)
            except BaseException:
                self.close()
                raise
            if ftype == p.STDOUT:
                self._client._grant(self._call, len(payload))
                yield "output", payload
            elif ftype == p.EVENT:
                yield "start", p.decode_json(payload).get("pid")
            elif ftype == p.RESPONSE:
                self._done = True
                self._client._finish(self._call)
                yield "exit", _check(p.decode_json(payload))

    async def write(self, data: bytes) -> None:
        if data:
            await self._client._send_data_chunk(self._call, data)

    async def control(self, msg: dict[str, Any]) -> None:
        if not self._done:
            await self._client._send(p.encode_json(p.CONTROL, self._call.channel, msg))

    async def resize(self, rows: int, cols: int) -> None:
        await self.control({"resize": {"rows": rows, "cols": cols}})

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._client._write(p.encode_json(p.CONTROL, self._call.channel, {"cancel": True}))
        self._client._finish(self._call)


async def watch(
    client: AgentClient, path: str, *, recursive: bool = False
) -> AsyncIterator[dict[str, Any]]:
    """A directory's changes: {"type": "ready", "path"} once watching, then one dict per
    change (guest/watch.py). Closing the iterator ends the watch inside the instance."""
    call = await client._open({"op": "watch", "path": path, "recursive": recursive})
    pending = b""
    done = False
    try:
        while True:
            ftype, payload = await client._next(call)
            if ftype == p.EVENT:
                yield {"type": "ready", "path": p.decode_json(payload).get("path")}
            elif ftype == p.STDOUT:
                client._grant(call, len(payload))
                pending += payload
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_WATCH_LINE:
                    raise AgentUnavailable("the agent sent a malformed watch event")
                for line in lines:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
            elif ftype == p.RESPONSE:
                done = True
                _check(p.decode_json(payload))
                return
    finally:
        if not done:
            with contextlib.suppress(Exception):
                client._write(p.encode_json(p.CONTROL, call.channel, {"cancel": True}))
        client._finish(call)
