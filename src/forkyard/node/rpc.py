"""The node's hot-path channel: one WebSocket per control plane, many calls multiplexed on it.

An HTTP request per exec costs the control plane and the node a few milliseconds of framework
work each (bench/compute.py); a message on a connection that is already open costs a fraction of
that. Lifecycle, layers, streamed exec and file reads stay on plain HTTP (server.py), where a
few milliseconds do not matter; exec and the small file operations come only through here.

Messages are JSON text frames:

    control plane -> node   {"id": 7, "op": "exec", "instance": "inst_...", "params": {...}}
                            {"id": 7, "cancel": true}     (the caller gave up: stop the work)
    node -> control plane   {"id": 7, "ok": true, "result": {...}}
                            {"id": 7, "ok": false, "status": 404, "error": {code, message, details}}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from forkyard.kit.errors import ForkyardError
from forkyard.node.drivers.base import Driver

log = logging.getLogger("forkyard.node.rpc")

# Largest message either end accepts. Neither end sends a larger one: a message over it would
# make the receiving end close the channel, and with it every other tenant's calls. A call too
# large is refused on its own (`payload_too_large`), an answer too large is replaced by an error
# answer (`response_too_large`); a file larger than FILE_WRITE_MAX goes over HTTP, streamed.
MAX_MESSAGE = 64 * 1024 * 1024
# An exec's output, both streams together, whatever the control plane asks: base64 and all it
# fits in one answer.
MAX_EXEC_OUTPUT = 16 * 1024 * 1024
# Files up to this size are written through the channel; larger ones stream over HTTP.
FILE_WRITE_MAX = 4 * 1024 * 1024

Op = Callable[[Driver, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def file_json(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "path": info.path,
        "type": info.type,
        "size": info.size,
        "mode": info.mode,
        "mtime": info.mtime,
        "target": info.target,
    }


async def run_exec(driver: Driver, instance_id: str, p: dict[str, Any]) -> dict[str, Any]:
    stdin = p.get("stdin_b64")
    r = await driver.exec(
        instance_id,
        p["command"],
        cwd=p.get("cwd"),
        env=p.get("env"),
        stdin=base64.b64decode(stdin) if stdin else None,
        timeout=p.get("timeout_s"),
        max_output=min(int(p.get("max_output") or 1024 * 1024), MAX_EXEC_OUTPUT),
    )
    return {
        "exit_code": r.exit_code,
        "stdout_b64": b64(r.stdout),
        "stderr_b64": b64(r.stderr),
        "timed_out": r.timed_out,
        "truncated": r.truncated,
        "duration_ms": r.duration_ms,
        "signal": r.signal,
    }


async def write_file(driver: Driver, instance_id: str, p: dict[str, Any]) -> dict[str, Any]:
    info = await driver.write_file(
        instance_id,
        p["path"],
        base64.b64decode(p["content_b64"]),
        mode=int(p.get("mode", 0o644)),
        make_parents=bool(p.get("make_parents", True)),
    )
    return file_json(info)


async def edit_file(driver: Driver, instance_id: str, p: dict[str, Any]) -> dict[str, Any]:
    r = await driver.edit_file(
        instance_id,
        p["path"],
        p["old_str"],
        p["new_str"],
        replace_all=bool(p.get("replace_all", False)),
    )
    return {"count": r.count, "replaced": r.replaced}


async def list_files(driver: Driver, instance_id: str, p: dict[str, Any]) -> dict[str, Any]:
    depth = int(p.get("depth", 1))
    if not 1 <= depth <= 10:
        raise ValueError("depth must be 1..10")
    entries = await driver.list_dir(instance_id, p["path"], depth=depth)
    return {"entries": [file_json(e) for e in entries]}


OPS: dict[str, Op] = {
    "exec": run_exec,
    "files.write": write_file,
    "files.edit": edit_file,
    "files.list": list_files,
}


def _error(call_id: Any, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ForkyardError):
        return {
            "id": call_id,
            "ok": False,
            "status": exc.status_code,
            "error": {"code": exc.code, "message": exc.message, "details": exc.details or {}},
        }
    if isinstance(exc, (KeyError, ValueError, TypeError)):
        return {
            "id": call_id,
            "ok": False,
            "status": 400,
            "error": {"code": "invalid_request", "message": f"bad params: {exc}", "details": {}},
        }
    log.exception("rpc op failed", exc_info=exc)
    return {
        "id": call_id,
        "ok": False,
        "status": 500,
        "error": {"code": "node_error", "message": "The compute server failed.", "details": {}},
    }


def _too_large(call_id: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "ok": False,
        "status": 502,
        "error": {
            "code": "response_too_large",
            "message": "The answer was too large to send.",
            "details": {"max_bytes": MAX_MESSAGE},
        },
    }


async def serve(websocket: WebSocket, driver: Driver) -> None:
    """Answer calls until the control plane hangs up; its calls still running are cancelled
    (an exec's process group is killed by the driver when its call is cancelled)."""
    await websocket.accept()
    running: dict[Any, asyncio.Task[None]] = {}
    send_lock = asyncio.Lock()

    async def reply(message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        if len(text) > MAX_MESSAGE:  # the control plane would drop the channel for it
            text = json.dumps(_too_large(message.get("id")), separators=(",", ":"))
        async with send_lock:
            with contextlib.suppress(Exception):
                await websocket.send_text(text)

    async def handle(call_id: Any, op: Op, instance_id: str, params: dict[str, Any]) -> None:
        try:
            result = await op(driver, instance_id, params)
            await reply({"id": call_id, "ok": True, "result": result})
        except Exception as exc:  # every failure goes back to the caller
            await reply(_error(call_id, exc))
        finally:
            running.pop(call_id, None)

    try:
        while True:
            raw = await websocket.receive()
            if raw["type"] == "websocket.disconnect":
                break
            # A malformed message fails alone: the channel carries every tenant's calls.
            try:
                message = json.loads(raw.get("text") or raw.get("bytes") or b"")
                call_id = message["id"]
                if not isinstance(call_id, int | str):
                    raise TypeError("id")
            except (ValueError, KeyError, TypeError):
                log.warning("malformed message on the call channel, ignored")
                continue
            if message.get("cancel"):
                task = running.get(call_id)
                if task is not None:
                    task.cancel()
                continue
            op = OPS.get(message.get("op", ""))
            if op is None or not isinstance(message.get("params", {}), dict):
                await reply(_error(call_id, ValueError(f"unknown op {message.get('op')!r}")))
                continue
            running[call_id] = asyncio.create_task(
                handle(call_id, op, str(message.get("instance", "")), message.get("params", {}))
            )
    except WebSocketDisconnect:
        pass
    finally:
        for task in list(running.values()):
            task.cancel()
