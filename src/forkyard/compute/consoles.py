"""Web terminals and file watching on an instance (tags terminal, files).

Terminal (`GET /v1/instances/{id}/terminal`, a WebSocket; query `cols`, `rows`, `term`):
- the client sends binary messages (keystrokes, as bytes) and text messages of JSON:
  `{"type": "input", "data": "ls\\r"}`, `{"type": "resize", "cols": 120, "rows": 40}`;
- the server sends binary messages (what the terminal shows, raw bytes with escape codes) and
  text messages of JSON: `{"type": "ready"}` once the shell runs, `{"type": "exit",
  "exit_code": 0}` when it ends (then it closes, code 1000), `{"type": "error", "code",
  "message"}` (then it closes, code 1011).
- Authentication is the API's: a Bearer API key with write scope, or the session cookie from an
  allowed Origin (close codes 4401 unauthenticated, 4403 forbidden, 4404 not found, 4409 not
  running). Several terminals may be open on one instance; each is its own shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import websockets
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from forkyard.compute.exec.claim import claim
from forkyard.compute.exec.stream import KEEPALIVE_S, sse_frame
from forkyard.identity.deps import Reader
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import Forbidden, ForkyardError
from forkyard.node import contract as c

# WebSocket routes take no Request-based dependency: the terminal authenticates by itself.
terminals = APIRouter(prefix="/v1/instances", tags=["terminal"])
watch_router = protected_router("files", prefix="/v1/instances")

CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404, 409: 4409}


@terminals.websocket("/{id}/terminal")
async def terminal(
    websocket: WebSocket,
    id: str,
    cols: Annotated[int, Query(ge=1, le=10000)] = 80,
    rows: Annotated[int, Query(ge=1, le=10000)] = 24,
    term: Annotated[str, Query(max_length=64)] = "xterm-256color",
) -> None:
    """A shell under a terminal, for web consoles (message format in the module docstring)."""
    from forkyard.identity.deps import get_principal

    # As a write: read-only keys are refused, and a cookie needs an allowed Origin (a page of
    # another site must not open a shell with the visitor's cookie).
    request = Request({**websocket.scope, "type": "http", "method": "POST"})
    try:
        principal = await get_principal(request)
        if not principal.can("write"):
            raise Forbidden("This needs the `write` scope.", details={"scope": "write"})
        target = await claim(request, principal, id)
        # A warm WebSocket, as the SSH gateway's sessions take (node_client/warm.py): no
        # connect, upgrade or node authentication before the shell starts.
        node_ws = await target.node.open_session(
            target.instance_id, c.SessionOpenIn(kind="pty", term=term, rows=rows, cols=cols)
        )
    except ForkyardError as exc:
        await websocket.close(CLOSE_CODES.get(exc.status_code, 1011), exc.code)
        return
    await websocket.accept()
    await _relay_terminal(websocket, node_ws)


async def _relay_terminal(websocket: WebSocket, node_ws: Any) -> None:
    async def from_browser() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await node_ws.send(message["bytes"])
                continue
            try:
                msg = json.loads(message.get("text") or "")
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "input" and isinstance(msg.get("data"), str):
                await node_ws.send(msg["data"].encode())
            elif msg.get("type") == "resize":
                with contextlib.suppress(ValueError, TypeError):
                    ctl = c.SessionControlIn(
                        type="resize", rows=int(msg["rows"]), cols=int(msg["cols"])
                    )
                    await node_ws.send(ctl.model_dump_json(exclude_none=True))

    async def to_browser() -> None:
        async for message in node_ws:
            if isinstance(message, bytes):
                await websocket.send_bytes(message[1:])
                continue
            event = json.loads(message)
            if event.get("type") == "start":
                await websocket.send_text(json.dumps({"type": "ready"}))
            elif event.get("type") == "exit":
                await websocket.send_text(
                    json.dumps({"type": "exit", "exit_code": event.get("exit_code")})
                )
                await websocket.close(1000)
                return
            else:
                await websocket.send_text(
                    json.dumps(
                        {
                            "type": "error",
                            "code": event.get("code", "terminal_failed"),
                            "message": event.get("message", ""),
                        }
                    )
                )
                await websocket.close(1011)
                return
        await websocket.close(1011)

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(to_browser())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception):
            await node_ws.close()
        with contextlib.suppress(Exception, WebSocketDisconnect, websockets.WebSocketException):
            await websocket.close()


@watch_router.get(
    "/{id}/files/watch",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: ready, then created, modified, deleted, moved "
            "(with `from`), overflow; `end` when the watched directory goes away.",
        }
    },
)
async def watch_files(
    id: str,
    request: Request,
    principal: Reader,
    path: Annotated[str, Query(min_length=1, max_length=4096)] = "/root",
    recursive: bool = False,
) -> StreamingResponse:
    """Changes under a directory of the instance as server-sent events (inotify inside it)."""
    target = await claim(request, principal, id)
    events = target.node.watch(target.instance_id, c.WatchIn(path=path, recursive=recursive))
    iterator = events.__aiter__()
    first = await iterator.__anext__()  # the node's refusal (no such directory) is the answer

    async def stream() -> AsyncIterator[bytes]:
        seq = 1
        yield sse_frame("ready", seq, {"path": first.get("path")})
        pending: asyncio.Task[dict[str, Any]] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                finished, pending = pending, None
                seq += 1
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    yield sse_frame("end", seq, {})
                    return
                except ForkyardError as exc:
                    yield sse_frame("error", seq, {"code": exc.code, "message": exc.message})
                    return
                kind = event.pop("type", "error")
                if kind == "error":
                    yield sse_frame("error", seq, event)
                    return
                yield sse_frame(kind, seq, event)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
