"""The framing under every call: a call's channel, its bounded queue of frames, the check of
an answer, and a unix-socket name short enough to bind or connect."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from forkyard.guest import protocol as p
from forkyard.node.errors import AgentOperationError

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


def _check(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("ok"):
        return body
    err = body.get("error") or {}
    raise AgentOperationError(err.get("code", p.E_INTERNAL), err.get("message", "agent error"))
