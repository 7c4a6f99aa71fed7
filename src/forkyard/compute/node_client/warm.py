"""Connections to a node opened ahead of need, each used once: the session WebSockets
(node/api/sessions.py `/sessions/connect`) and the port relay's connections
(forwards/tunnel.py, node/port_relay.py).

A connection made when it is wanted pays a TCP connect and the node's authentication (for a
WebSocket, an HTTP upgrade too) before its first byte of work: most of what the SSH gateway
added to an `ssh host true` once sign-in was fast (ADR 0014), and most of the node hop of a
preview request (ADR 0013). A `WarmPool` keeps a few per node, signed in and waiting; the
caller's first message names what it is for. Each is used to its end, so a take is followed
by opening replacements, off the caller's path."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from forkyard.compute.errors import NodeUnreachable

T = TypeVar("T")

# Less than the node's wait for a first message (node/api/sessions.py and node/port_relay.py
# WARM_IDLE_S), so a taken connection is still listening.
WARM_MAX_AGE_S = 45.0


class WarmPool(Generic[T]):
    """Up to `keep` connections from `open`, refilled in the background once fewer than
    `refill_below` are left. `alive` says whether one can still be used (the node may have
    restarted since), `discard` ends one that will not be."""

    def __init__(
        self,
        open: Callable[[], Awaitable[T]],
        *,
        alive: Callable[[T], bool],
        discard: Callable[[T], None],
        keep: int,
        refill_below: int,
    ) -> None:
        self.open = open
        self._alive = alive
        self._discard = discard
        self._keep = keep
        self._refill_below = refill_below
        self.loop = asyncio.get_running_loop()
        self._idle: deque[tuple[float, T]] = deque()
        self._filling: asyncio.Task[None] | None = None

    def take(self) -> T | None:
        """A warm connection young enough that the node still waits on it, or None."""
        now = time.monotonic()
        found = None
        while self._idle and found is None:
            born, conn = self._idle.popleft()
            if now - born < WARM_MAX_AGE_S and self._alive(conn):
                found = conn
            else:
                self._discard(conn)
        if len(self._idle) < self._refill_below and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill())
        return found

    async def _fill(self) -> None:
        while len(self._idle) < self._keep:
            try:
                conn = await self.open()
            except NodeUnreachable:
                return  # the next take() tries again
            self._idle.append((time.monotonic(), conn))

    def close(self) -> None:
        """Give up the pool: what is idle is discarded, a refill under way stops."""
        if self._filling is not None:
            self._filling.cancel()
        while self._idle:
            self._discard(self._idle.popleft()[1])


# --- session WebSockets ---

# Kept ready per node: one for the session being taken, one for the next while it refills.
SESSIONS_PER_NODE = 2

_sessions: dict[tuple[str, str], WarmPool[ClientConnection]] = {}
_closing: set[asyncio.Task[None]] = set()


def warm_sessions(url: str, secret: str, max_size: int) -> WarmPool[ClientConnection]:
    """The pool of one node's session route (`url`), on the running event loop."""
    key = (url, secret)
    pool = _sessions.get(key)
    # WebSockets belong to the event loop that made them (tests run several loops in turn).
    if pool is None or pool.loop is not asyncio.get_running_loop():

        async def open_session_socket() -> ClientConnection:
            try:
                return await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {secret}"},
                    compression=None,
                    proxy=None,
                    max_size=max_size,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                raise NodeUnreachable(details={"server": url.split("//")[-1]}) from exc

        pool = _sessions[key] = WarmPool(
            open_session_socket,
            alive=lambda ws: ws.state is State.OPEN,
            discard=_close_later,
            keep=SESSIONS_PER_NODE,
            refill_below=SESSIONS_PER_NODE,
        )
    return pool


def _close_later(ws: ClientConnection) -> None:
    _closing.add(task := asyncio.create_task(ws.close()))
    task.add_done_callback(_closing.discard)
