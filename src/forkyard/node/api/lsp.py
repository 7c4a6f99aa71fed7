"""Language servers inside this node's instances (node/lsp.py has the rules of sharing).

Protocol of the WebSocket: the node accepts and sends one text message, `contract.LspOpenOut`.
When it says `ok`, every text message either way is one JSON-RPC message; the node closes the
WebSocket when the server ends (code 1011) or after the client's `exit` (1000)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node.api.deps import Node
from forkyard.node.lsp import MAX_MESSAGE as MAX_LSP_MESSAGE
from forkyard.node.lsp import LanguageServer, LspClient, available_servers

router = APIRouter(prefix="/node")

LANGUAGE = re.compile(r"^[a-z0-9][a-z0-9+#.-]{0,31}$")


class InvalidLspRequest(ForkyardError):
    status_code = 422
    code = "invalid_request"


@router.get("/instances/{instance_id}/lsp", response_model=c.LspServersOut)
async def lsp_servers(instance_id: str, node: Node) -> c.LspServersOut:
    """The language servers the instance's image has, and those running."""
    agent = await node.driver.agent(instance_id)
    servers = []
    for offer in await available_servers(agent):
        running = [
            c.LspRunningOut(root=s.root, clients=len(s.clients), started_at=s.started_at)
            for s in node.lsp.running(instance_id, offer["language"])
        ]
        servers.append(c.LspServerOut(**offer, running=running))
    return c.LspServersOut(servers=servers)


@router.websocket("/instances/{instance_id}/lsp/{language}")
async def lsp_session(
    websocket: WebSocket,
    instance_id: str,
    language: str,
    node: Node,
    root: Annotated[str, Query(max_length=4096)] = "/root",
) -> None:
    """JSON-RPC messages to and from the shared language server (protocol above)."""
    await websocket.accept()
    try:
        if not LANGUAGE.match(language):
            raise InvalidLspRequest("No such language.", details={"language": language[:40]})
        if not root.startswith("/") or "\x00" in root or "/../" in f"{root}/":
            raise InvalidLspRequest("`root` must be an absolute path.")
        agent = await node.driver.agent(instance_id)
        server, client = await node.lsp.connect(agent, instance_id, language, root)
    except ForkyardError as exc:
        out = c.LspOpenOut(ok=False, code=exc.code, message=exc.message)
        with contextlib.suppress(Exception, WebSocketDisconnect):
            await websocket.send_text(out.model_dump_json())
            await websocket.close()
        return
    try:
        await websocket.send_text(c.LspOpenOut(ok=True).model_dump_json())
        await _relay(websocket, server, client)
    finally:
        await server.detach(client)


async def _relay(websocket: WebSocket, server: LanguageServer, client: LspClient) -> None:
    async def inbound() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                text = data.decode("utf-8", "replace")
            if len(text) > MAX_LSP_MESSAGE:
                continue
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                await server.from_client(client, parsed)
            if client.closed:
                return

    async def outbound() -> None:
        while True:
            text = await client.outbox.get()
            if text is None:
                return
            await websocket.send_text(text)

    tasks = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception, WebSocketDisconnect):
            await websocket.close(1000 if not server.stopped else 1011)
