"""POST /v1/instances/{id}/exec/stream: an exec's output as server-sent frames while it runs.
A client that disconnects has its process killed; the record closes whatever way it ends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from forkyard.compute import schemas
from forkyard.compute.exec.claim import claim
from forkyard.compute.exec.routers import exec_router
from forkyard.compute.exec.run import node_exec_body
from forkyard.compute.node_client import b64decode
from forkyard.identity.deps import Writer
from forkyard.kit.errors import ForkyardError
from forkyard.node.contract import ExecStreamIn

# A comment frame after this long without output, so proxies keep the connection open.
KEEPALIVE_S = 15.0


def sse_frame(event: str, seq: int, data: dict[str, Any]) -> bytes:
    """One server-sent event (exec streams and file watches share the format)."""
    return f"event: {event}\nid: {seq}\ndata: {json.dumps(data)}\n\n".encode()


@exec_router.post(
    "/{id}/exec/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: start, stdout, stderr, exit or error.",
        }
    },
)
async def stream_command(
    id: str, body: schemas.ExecRequest, request: Request, principal: Writer
) -> StreamingResponse:
    """SSE stream of exec frames: `start` {exec_id, pid}, `stdout`/`stderr` {data}, then `exit` {exit_code, duration_ms} or `error`. A client that disconnects has its process killed."""
    node_body = node_exec_body(body, request)
    target = await claim(request, principal, id, exec_command=body.command, streamed=True)
    instance_id, node, exec_id = target.instance_id, target.node, target.exec_id

    async def events() -> AsyncIterator[bytes]:
        seq = 0
        status, exit_code, duration, signal = "killed", None, None, None
        sizes = {"stdout": 0, "stderr": 0}  # for exec.finished: how much, never what
        frames = node.exec_stream(instance_id, ExecStreamIn.model_validate(node_body)).__aiter__()
        pending: asyncio.Task[dict[str, Any]] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(frames.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                finished, pending = pending, None
                try:
                    frame = finished.result()
                except StopAsyncIteration:
                    break
                seq += 1
                kind = frame["type"]
                if kind == "start":
                    yield sse_frame("start", seq, {"exec_id": exec_id, "pid": frame.get("pid")})
                elif kind in ("stdout", "stderr"):
                    raw = b64decode(frame.get("data_b64"))
                    sizes[kind] += len(raw)
                    try:
                        yield sse_frame(kind, seq, {"data": raw.decode("utf-8")})
                    except UnicodeDecodeError:
                        yield sse_frame(
                            kind,
                            seq,
                            {"data": base64.b64encode(raw).decode(), "encoding": "base64"},
                        )
                elif kind == "exit":
                    exit_code, duration = frame.get("exit_code"), frame.get("duration_ms")
                    signal = frame.get("signal")
                    status = "timed_out" if frame.get("timed_out") else "exited"
                    yield sse_frame(
                        "exit",
                        seq,
                        {
                            "exec_id": exec_id,
                            "exit_code": exit_code,
                            "duration_ms": duration,
                            "timed_out": bool(frame.get("timed_out")),
                            "signal": frame.get("signal"),
                        },
                    )
                    break
                else:
                    status = "failed"
                    yield sse_frame(
                        "error",
                        seq,
                        {
                            "code": frame.get("code", "exec_failed"),
                            "message": frame.get("message", ""),
                        },
                    )
                    break
        except ForkyardError as exc:
            status = "failed"
            yield sse_frame("error", seq + 1, {"code": exc.code, "message": exc.message})
        finally:
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await frames.aclose()  # type: ignore[attr-defined]
            # Shielded: a disconnecting client cancels the stream, but the record must close.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    target.finish(
                        status,
                        exit_code=exit_code,
                        duration_ms=duration,
                        signal=signal,
                        stdout_bytes=sizes["stdout"],
                        stderr_bytes=sizes["stderr"],
                    )
                )

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
