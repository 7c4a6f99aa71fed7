"""Session WebSockets to a node opened ahead of need (node/api/sessions.py `/sessions/connect`).

A session on a new WebSocket pays a TCP connect, an HTTP upgrade and the node's authentication
before its command can start: most of what the SSH gateway added to an `ssh host true` once
sign-in was fast (ADR 0014). Here a few WebSockets per node wait, authenticated, and the first
message of one names the instance and the session. A session uses its WebSocket to the end (the
node closes it after the exit), so each take is followed by opening a replacement, off the
caller's path. Ports have their own pool, which reuses WebSockets (forwards/tunnel.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from forkyard.compute.errors import NodeUnreachable

# Kept ready per node: one for the session being taken, one for the next while it refills.
WARM_PER_NODE = 2
# Less than the node's wait for a first message (node/api/sessions.py WARM_IDLE_S), so a
# taken WebSocket is still listening.
WARM_MAX_AGE_S = 45.0


class WarmSessions:
    """Authenticated WebSockets to one node's `/node/sessions/connect`, each for one session."""

    def __init__(self, url: str, secret: str, max_size: int) -> None:
        self.url = url
        self.secret = secret
        self.max_size = max_size
        self.loop = asyncio.get_running_loop()
        self._idle: deque[tuple[float, ClientConnection]] = deque()
        self._filling: asyncio.Task[None] | None = None

    async def open(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.secret}"},
                compression=None,
                proxy=None,
                max_size=self.max_size,
                open_timeout=5,
                ping_interval=20,
                ping_timeout=20,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise NodeUnreachable(details={"server": self.url.split("//")[-1]}) from exc

    def take(self) -> ClientConnection | None:
        """A warm WebSocket the node still waits on, or None; a replacement is opened."""
        now = time.monotonic()
        found = None
        while self._idle and found is None:
            born, ws = self._idle.popleft()
            if now - born < WARM_MAX_AGE_S and ws.state is State.OPEN:
                found = ws
            else:
                _closing.add(task := asyncio.create_task(ws.close()))
                task.add_done_callback(_closing.discard)
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill())
        return found

    async def _fill(self) -> None:
        while len(self._idle) < WARM_PER_NODE:
            try:
                ws = await self.open()
            except NodeUnreachable:
                return  # the next take() tries again
            self._idle.append((time.monotonic(), ws))

    async def close(self) -> None:
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(BaseException):
                await self._filling
        while self._idle:
            _, ws = self._idle.popleft()
            with contextlib.suppress(Exception):
                await ws.close()


_pools: dict[tuple[str, str], WarmSessions] = {}
_closing: set[asyncio.Task[None]] = set()


def warm_sessions(url: str, secret: str, max_size: int) -> WarmSessions:
    """The pool of one node's session route, on the running event loop."""
    key = (url, secret)
    pool = _pools.get(key)
    # WebSockets belong to the event loop that made them (tests run several loops in turn).
    if pool is None or pool.loop is not asyncio.get_running_loop():
        pool = _pools[key] = WarmSessions(url, secret, max_size)
    return pool
