"""Interactive sessions and file watches on this node's instances: the SSH gateway's shells and
commands, web terminals, and the files watch stream.

Session protocol (a WebSocket, `/node/sessions/connect`, opened by the control plane ahead of
need): the caller sends `contract.SessionConnectIn` (the instance and `SessionOpenIn`) as JSON
text first;
then binary messages are stdin and text messages are `contract.SessionControlIn`. The node
sends `contract.SessionEventOut` as text (`start`, then `exit` or `error`, then it closes) and
output as binary messages whose first byte is the stream (1 stdout, 2 stderr)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node.agent_sessions import AgentPty, watch
from forkyard.node.api.deps import Node, NodeContext

router = APIRouter(prefix="/node")

NDJSON = "application/x-ndjson"
STDOUT, STDERR = b"\x01", b"\x02"
WATCH_KEEPALIVE_S = 10.0
# How long a warm session WebSocket waits for its first message before the node closes it:
# longer than the control plane keeps one unused (compute/node_client/warm.py WARM_MAX_AGE_S).
WARM_IDLE_S = 60.0


async def _event(websocket: WebSocket, **fields: Any) -> None:
    await websocket.send_text(c.SessionEventOut(**fields).model_dump_json(exclude_none=True))


@router.websocket("/sessions/connect")
async def session_connect(websocket: WebSocket, node: Node) -> None:
    """A session whose instance the first message names (contract.SessionConnectIn): opened and
    authenticated ahead of need, then the protocol above. One session each."""
    await websocket.accept()
    try:
        message = await asyncio.wait_for(websocket.receive(), WARM_IDLE_S)
    except TimeoutError:
        with contextlib.suppress(Exception):
            await websocket.close()
        return
    if message["type"] == "websocket.disconnect":
        return
    try:
        opened = c.SessionConnectIn.model_validate_json(message.get("text") or "")
    except ValidationError as exc:
        await _refuse(websocket, "invalid_session", str(exc)[:200])
        return
    await _serve(websocket, node, opened.instance_id, opened)


async def _refuse(websocket: WebSocket, code: str, message: str) -> None:
    with contextlib.suppress(Exception, WebSocketDisconnect):
        await _event(websocket, type="error", code=code, message=message)
        await websocket.close()


async def _serve(
    websocket: WebSocket, node: NodeContext, instance_id: str, opened: c.SessionOpenIn
) -> None:
    try:
        client = await node.driver.agent(instance_id)
    except KeyError as exc:
        await _refuse(websocket, "invalid_session", str(exc)[:200])
        return
    except ForkyardError as exc:
        await _refuse(websocket, exc.code, exc.message)
        return
    if opened.kind == "pty":
        await _run_pty(websocket, client, opened)
    else:
        await _run_exec(websocket, client, opened)


async def _pump_input(websocket: WebSocket, write: Any, control: Any) -> None:
    """The caller's messages until it leaves: stdin bytes and controls."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            await write(data)
            continue
        try:
            ctl = c.SessionControlIn.model_validate_json(message.get("text") or "")
        except ValidationError:
            continue
        await control(ctl)


async def _relay(websocket: WebSocket, output: Any, pump: Any) -> None:
    """Run the output side and the input side together; either ending ends the session."""
    tasks = [asyncio.create_task(output), asyncio.create_task(pump)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.exception() is not None and isinstance(t.exception(), ForkyardError):
                exc = t.exception()
                assert isinstance(exc, ForkyardError)
                with contextlib.suppress(Exception):
                    await _event(websocket, type="error", code=exc.code, message=exc.message)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception, WebSocketDisconnect):
            await websocket.close()


async def _run_pty(websocket: WebSocket, client: Any, opened: c.SessionOpenIn) -> None:
    pty = await AgentPty.open(
        client,
        command=opened.command,
        env=opened.env,
        term=opened.term,
        rows=opened.rows,
        cols=opened.cols,
    )

    async def output() -> None:
        async for kind, value in pty.events():
            if kind == "output":
                await websocket.send_bytes(STDOUT + value)
            elif kind == "start":
                await _event(websocket, type="start", pid=value)
            else:
                await _event(
                    websocket, type="exit", exit_code=value["exit_code"], signal=value["signal"]
                )

    async def control(ctl: c.SessionControlIn) -> None:
        if ctl.type == "resize" and ctl.rows and ctl.cols:
            await pty.resize(ctl.rows, ctl.cols)
        elif ctl.type == "signal" and ctl.signal:
            await pty.control({"signal": ctl.signal})

    try:
        await _relay(websocket, output(), _pump_input(websocket, pty.write, control))
    finally:
        pty.close()


async def _run_exec(websocket: WebSocket, client: Any, opened: c.SessionOpenIn) -> None:
    if not opened.command:
        await _event(websocket, type="error", code="invalid_session", message="no command")
        await websocket.close()
        return
    env = dict(opened.env)
    if opened.term:
        env.setdefault("TERM", opened.term)
    stream = client.exec_stream(opened.command, env=env, stdin_pipe=True)
    await stream.__aenter__()

    async def output() -> None:
        async for ev in stream:
            if ev.type == "stdout":
                await websocket.send_bytes(STDOUT + ev.data)
            elif ev.type == "stderr":
                await websocket.send_bytes(STDERR + ev.data)
            elif ev.type == "start":
                await _event(websocket, type="start", pid=ev.pid)
            else:
                await _event(websocket, type="exit", exit_code=ev.exit_code, signal=ev.signal)
                return

    async def control(ctl: c.SessionControlIn) -> None:
        if ctl.type == "eof":
            await stream.close_stdin()
        elif ctl.type == "signal" and ctl.signal:
            await stream.signal(ctl.signal)

    try:
        await _relay(websocket, output(), _pump_input(websocket, stream.write, control))
    finally:
        await stream.aclose()


@router.post(
    "/instances/{instance_id}/files/watch",
    response_class=StreamingResponse,
    responses={200: {"model": c.WatchEventOut, "content": {NDJSON: {}}}},
)
async def files_watch(instance_id: str, body: c.WatchIn, node: Node) -> StreamingResponse:
    """A directory's changes as NDJSON lines (contract.WatchEventOut): `ready`, then events;
    an empty line now and then while quiet, so a caller that left is noticed."""
    client = await node.driver.agent(instance_id)
    events = watch(client, body.path, recursive=body.recursive)
    # The agent's refusal (no such directory) becomes the route's error, before any line.
    first = await events.__anext__()

    async def lines() -> AsyncIterator[bytes]:
        yield (json.dumps(first) + "\n").encode()
        pending: asyncio.Task[dict[str, Any]] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(events.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=WATCH_KEEPALIVE_S)
                if not done:
                    yield b"\n"
                    continue
                finished, pending = pending, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    return
                except ForkyardError as exc:
                    yield (
                        json.dumps({"type": "error", "code": exc.code, "message": exc.message})
                        + "\n"
                    ).encode()
                    return
                yield (json.dumps(event) + "\n").encode()
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(lines(), media_type=NDJSON)
