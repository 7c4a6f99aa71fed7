"""Language servers of an instance (tag lsp).

`GET /v1/instances/{id}/lsp/{language}` is a WebSocket (query `root`, default `/root`): every
text message either way is one JSON-RPC message of the Language Server Protocol (no
`Content-Length` headers). The server runs inside the instance with `root` as its working
directory and is shared by every client of the same instance, language and root: request ids
are rewritten so that each answer reaches the client that asked, `initialize` reaches the
server once (later clients get the first one's result), and `shutdown`/`exit` end only that
client. With no client left the server is stopped after a grace (docs/adr/0017-lsp.md).

Authentication as for the terminal: a Bearer API key with write scope, or the session cookie
from an allowed Origin. Close codes: 4401 unauthenticated, 4403 forbidden, 4404 no such
instance or no server for the language, 4409 not running (or too many servers), 4422 `root` is
not a directory of the instance; 1011 when the server ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

import websockets
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect

from forkyard.compute.exec.claim import claim
from forkyard.identity.deps import Reader
from forkyard.identity.routing import protected_router
from forkyard.kit.errors import Forbidden, ForkyardError
from forkyard.kit.pagination import Page
from forkyard.lsp.schemas import LanguageServer, LspRunning

router = protected_router("lsp", prefix="/v1/instances")
# The WebSocket takes no Request-based dependency: it authenticates by itself.
sockets = APIRouter(prefix="/v1/instances", tags=["lsp"])

CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404, 409: 4409, 422: 4422}


@router.get("/{id}/lsp", response_model=Page[LanguageServer])
async def list_language_servers(id: str, request: Request, principal: Reader) -> Page[Any]:
    """The language servers the instance's image offers (found on its PATH), and those running."""
    target = await claim(request, principal, id)
    found = await target.node.lsp_servers(target.instance_id)
    servers = [
        LanguageServer(
            language=s.language,
            name=s.name,
            command=s.argv,
            path=s.path,
            running=[
                LspRunning(
                    root=r.root,
                    clients=r.clients,
                    started_at=datetime.fromtimestamp(r.started_at, UTC),
                )
                for r in s.running
            ],
        )
        for s in found.servers
    ]
    return Page(data=servers, next_cursor=None)


@sockets.websocket("/{id}/lsp/{language}")
async def language_server(
    websocket: WebSocket,
    id: str,
    language: str,
    root: Annotated[str, Query(min_length=1, max_length=4096)] = "/root",
) -> None:
    """JSON-RPC to the instance's shared language server (protocol in the module docstring)."""
    from forkyard.identity.deps import get_principal

    # As a write, like the terminal: the server can read and change the workspace's files.
    request = Request({**websocket.scope, "type": "http", "method": "POST"})
    try:
        principal = await get_principal(request)
        if not principal.can("write"):
            raise Forbidden("This needs the `write` scope.", details={"scope": "write"})
        target = await claim(request, principal, id)
        node_ws = await target.node.open_lsp(target.instance_id, language, root)
    except ForkyardError as exc:
        await websocket.close(CLOSE_CODES.get(exc.status_code, 1011), exc.code)
        return
    await websocket.accept()
    await _relay(websocket, node_ws)


async def _relay(websocket: WebSocket, node_ws: Any) -> None:
    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            if text:
                await node_ws.send(text)

    async def to_client() -> None:
        async for message in node_ws:
            await websocket.send_text(
                message if isinstance(message, str) else message.decode("utf-8", "replace")
            )
        code = node_ws.close_code if node_ws.close_code in (1000, 1011) else 1011
        await websocket.close(code)

    tasks = [asyncio.create_task(from_client()), asyncio.create_task(to_client())]
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


routers = [router, sockets]
