"""POST /v1/instances/{id}/exec: run a command to completion and answer with its exit code and
output. The exec's record is closed while the answer goes out (claim.close_beside_answer)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import Response

from forkyard.compute import schemas
from forkyard.compute.exec.claim import claim, close_beside_answer
from forkyard.compute.exec.routers import exec_router
from forkyard.compute.node_client import b64decode
from forkyard.identity.deps import Writer, settings_of
from forkyard.kit.errors import BadRequest


def node_exec_body(body: schemas.ExecRequest, request: Request) -> dict[str, Any]:
    """The node's exec parameters (stdin as base64, the server's timeout and output limits)."""
    settings = settings_of(request)
    stdin_b64 = None
    if body.stdin is not None:
        try:
            raw = (
                base64.b64decode(body.stdin, validate=True)
                if body.stdin_encoding == "base64"
                else body.stdin.encode()
            )
        except ValueError as exc:
            raise BadRequest("stdin is not valid base64.") from exc
        stdin_b64 = base64.b64encode(raw).decode()
    return {
        "command": body.command,
        "cwd": body.cwd,
        "env": body.env,
        "stdin_b64": stdin_b64,
        "timeout_s": body.timeout_s or settings.exec_default_timeout_s,
        "max_output": settings.exec_max_output_bytes,
    }


def _text_or_b64(out: bytes, err: bytes) -> tuple[str, str, Literal["utf-8", "base64"]]:
    try:
        return out.decode("utf-8"), err.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(out).decode(), base64.b64encode(err).decode(), "base64"


@exec_router.post("/{id}/exec", response_model=schemas.ExecResultOut)
async def run_command(
    id: str,
    body: schemas.ExecRequest,
    request: Request,
    principal: Writer,
) -> Response:
    """Run a command to completion and return its exit code and output."""
    node_body = node_exec_body(body, request)
    target = await claim(request, principal, id, exec_command=body.command)
    assert target.exec_id is not None
    try:
        result = await target.call("exec", node_body, timeout=node_body["timeout_s"] + 30)
    except BaseException:
        await asyncio.shield(target.finish("failed"))
        raise
    out_raw, err_raw = b64decode(result["stdout_b64"]), b64decode(result["stderr_b64"])
    close_beside_answer(
        target.finish(
            "timed_out" if result["timed_out"] else "exited",
            exit_code=result["exit_code"],
            duration_ms=result["duration_ms"],
            signal=result.get("signal"),
            stdout_bytes=len(out_raw),
            stderr_bytes=len(err_raw),
            truncated=result["truncated"],
        ),
        target.instance_id,
    )
    stdout, stderr, encoding = _text_or_b64(out_raw, err_raw)
    out = schemas.ExecResultOut(
        exec_id=target.exec_id,
        exit_code=result["exit_code"],
        stdout=stdout,
        stderr=stderr,
        encoding=encoding,
        timed_out=result["timed_out"],
        truncated=result["truncated"],
        duration_ms=result["duration_ms"],
        signal=result.get("signal"),
    )
    # Serialized here, once: the model was built from trusted values just above.
    return Response(out.model_dump_json(), media_type="application/json")
