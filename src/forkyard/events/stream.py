"""Server-sent streams of rows as they commit: an org's events (GET /v1/events/stream) and a
user's notices (GET /v1/notifications/stream).

A stream reads its rows from the table, in id order (ids are time-ordered), and sleeps until a
trigger announces a new one for its key (db/announcements.py) or a keep-alive is due. The SSE
`id:` of each row is the row's id: a client that reconnects with `Last-Event-ID` gets every row
after it, replayed from the table, then the live ones.

Ids are made before their transaction commits, so rows can commit out of id order. A live
stream therefore reads again from `LOOKBACK_S` back every time it wakes and skips what it has
sent (a bounded set: the ids of that window). A row whose transaction commits more than
`LOOKBACK_S` after its id was made is still in the table and the list, but an open stream
reading past it does not show it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse

from forkyard.db.announcements import listener
from forkyard.kit.ids import has_prefix, id_floor

LOOKBACK_S = 10.0
PAGE = 100
# While the LISTEN connection is down, streams poll the table this often.
POLL_UNLISTENED_S = 1.0

SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Server-sent events; `id:` is the row's id (resume with Last-Event-ID); "
        "`: keep-alive` comments at least every 15 s.",
    }
}


@dataclass(frozen=True)
class Row:
    id: str
    event: str  # the SSE event name
    data: dict[str, Any]


# Reads at most `limit` rows with ids above `after`, in id order.
ReadAfter = Callable[[str, int], Awaitable[list[Row]]]


def sse(row: Row) -> bytes:
    return f"event: {row.event}\nid: {row.id}\ndata: {json.dumps(row.data)}\n\n".encode()


def start_after(prefix: str, last_event_id: str | None) -> str:
    """Where a stream begins: after the client's last row, or (new, or an id that is not ours)
    with what commits from now on."""
    if last_event_id and has_prefix(last_event_id, prefix):
        return last_event_id
    return id_floor(prefix, int(time.time() * 1000))


async def follow(
    database_url: str,
    *,
    channel: str,
    key: str,
    prefix: str,
    after: str,
    read: ReadAfter,
    keepalive_s: float,
) -> AsyncIterator[bytes]:
    """Rows above `after` as they commit, until the client goes (the server cancels this)."""
    sent: dict[str, None] = {}  # ids sent within the lookback window, oldest first
    newest = after
    async with listener(database_url).watch(channel, key) as wake:
        yield b": connected\n\n"
        last_write = time.monotonic()
        while True:
            wake.clear()
            floor = id_floor(prefix, int((time.time() - LOOKBACK_S) * 1000))
            for old in [i for i in sent if i <= floor]:
                del sent[old]
            cursor = max(after, min(newest, floor))
            while True:
                rows = await read(cursor, PAGE)
                for row in rows:
                    if row.id in sent or row.id <= after:
                        continue
                    yield sse(row)
                    last_write = time.monotonic()
                    newest = max(newest, row.id)
                    if row.id > floor:
                        sent[row.id] = None
                if len(rows) < PAGE:
                    break
                cursor = rows[-1].id
            listening = listener(database_url).connected.is_set()
            while not wake.is_set():
                wait = keepalive_s - (time.monotonic() - last_write)
                if not listening:
                    wait = min(wait, POLL_UNLISTENED_S)
                if wait <= 0:
                    yield b": keep-alive\n\n"
                    last_write = time.monotonic()
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), wait)
                except TimeoutError:
                    if not listening:
                        break


def stream_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
