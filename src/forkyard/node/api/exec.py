"""Exec on this node: the call channel (exec and the small file operations, node/rpc.py) and
the streamed exec over HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import StreamingResponse

from forkyard.kit.errors import ForkyardError
from forkyard.node import contract as c
from forkyard.node import rpc
from forkyard.node.api.deps import Node

router = APIRouter(prefix="/node")

NDJSON = "application/x-ndjson"


@router.websocket("/rpc")
async def rpc_channel(websocket: WebSocket, node: Node) -> None:
    """The call channel: many calls in flight on one WebSocket (node/rpc.py)."""
    await rpc.serve(websocket, node.driver)


@router.post(
    "/instances/{instance_id}/exec/stream",
    response_class=StreamingResponse,
    responses={200: {"model": c.ExecEvent, "content": {NDJSON: {}}}},
)
async def exec_stream(instance_id: str, body: c.ExecStreamIn, node: Node) -> StreamingResponse:
    """Run a command, its events streamed as NDJSON lines (contract.ExecEvent)."""
    stream = await node.driver.exec_stream(
        instance_id,
        body.command,
        cwd=body.cwd,
        env=body.env,
        stdin=base64.b64decode(body.stdin_b64) if body.stdin_b64 else None,
        timeout=body.timeout_s,
    )

    async def lines() -> AsyncIterator[bytes]:
        # One event per line. If the caller goes away the generator is closed, and closing
        # the stream kills the process group inside the instance.
        try:
            async for ev in stream:
                out: dict[str, Any] = {"type": ev.type}
                if ev.type in ("stdout", "stderr"):
                    out["data_b64"] = rpc.b64(ev.data)
                elif ev.type == "start":
                    out["pid"] = ev.pid
                else:
                    out.update(
                        exit_code=ev.exit_code,
                        signal=ev.signal,
                        timed_out=ev.timed_out,
                        duration_ms=ev.duration_ms,
                    )
                yield (json.dumps(out) + "\n").encode()
        except ForkyardError as exc:
            yield (
                json.dumps({"type": "error", "code": exc.code, "message": exc.message}) + "\n"
            ).encode()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(stream.aclose())

    return StreamingResponse(lines(), media_type=NDJSON)
