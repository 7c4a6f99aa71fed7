"""The control plane's end of the node's call channel (node/rpc.py), for the hot path's calls."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from forkyard.compute.errors import CallTooLarge, NodeUnreachable
from forkyard.compute.node_client.errors import RemoteError
from forkyard.node.rpc import MAX_MESSAGE


class NodeRpc:
    """The control plane's end of the node's call channel (node/rpc.py): one WebSocket, opened
    on first use and again after it drops, with any number of calls in flight on it."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.url = "ws" + base_url.removeprefix("http").rstrip("/") + "/node/rpc"
        self.secret = secret
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    async def _connection(self) -> ClientConnection:
        async with self._connecting:
            if self._ws is not None and self._reader is not None and not self._reader.done():
                return self._ws
            try:
                self._ws = await connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.secret}"},
                    compression=None,
                    proxy=None,
                    max_size=MAX_MESSAGE,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                raise NodeUnreachable(details={"server": self.url.split("//")[-1]}) from exc
            self._reader = asyncio.create_task(self._read(self._ws))
            return self._ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                    future = self._pending.pop(message.get("id"), None)
                except (ValueError, TypeError, AttributeError):
                    continue  # one bad answer is lost alone; the channel carries on
                if future is not None and not future.done():
                    future.set_result(message)
        except (websockets.WebSocketException, OSError):
            pass
        finally:
            # Whatever was in flight on this connection will never be answered.
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(NodeUnreachable())
            self._pending.clear()

    async def call(
        self, op: str, instance_id: str, params: dict[str, Any], *, timeout: float
    ) -> Any:
        call_id = next(self._ids)
        message = json.dumps(
            {"id": call_id, "op": op, "instance": instance_id, "params": params},
            separators=(",", ":"),
        )
        if len(message) > MAX_MESSAGE:  # the node would close the channel on it
            raise CallTooLarge(details={"max_bytes": MAX_MESSAGE})
        ws = await self._connection()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            await ws.send(message)
            answer = await asyncio.wait_for(future, timeout)
        except BaseException as exc:
            self._pending.pop(call_id, None)
            if not future.done() or future.cancelled():
                # Cancelled or timed out: the node stops the work (an exec is killed).
                with contextlib.suppress(Exception):
                    await asyncio.shield(ws.send(json.dumps({"id": call_id, "cancel": True})))
            if isinstance(exc, (TimeoutError, websockets.WebSocketException, OSError)):
                raise NodeUnreachable(details={"server": self.url.split("//")[-1]}) from exc
            raise
        if not answer.get("ok"):
            err = answer.get("error") or {}
            raise RemoteError(
                int(answer.get("status") or 502),
                err.get("code", "node_error"),
                err.get("message", "The compute server failed."),
                err.get("details") or {},
            )
        return answer["result"]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
