"""Exec (plain and streamed) and files inside an instance (tags exec, files). Every file path
resolves inside the instance's own mount namespace: the guest agent does the work in there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute import schemas
from forkyard.compute.errors import EditNoMatch, EditNotUnique, InstanceNotRunning
from forkyard.compute.models import ExecRecord, Instance
from forkyard.compute.node_client import NodeClient, b64decode
from forkyard.compute.service import get_instance, node_for
from forkyard.db.engine import Database
from forkyard.db.session import DbSession, database
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import BadRequest, ForkyardError
from forkyard.kit.ids import new_id
from forkyard.kit.pagination import Page
from forkyard.kit.routing import protected_router

exec_router = protected_router("exec", prefix="/v1/instances")
files_router = protected_router("files", prefix="/v1/instances")

KEEPALIVE_S = 15.0


async def _running_node(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    instance_id: str,
    *,
    exec_command: str | list[str] | None = None,
    streamed: bool = False,
) -> tuple[Instance, NodeClient, ExecRecord | None]:
    """The running instance and its node; marks activity (for the idle timeout) and, for an
    exec, records it as running (the idle sweep leaves an instance with a running exec alone),
    then ends the request's transaction so no connection is held while the instance works."""
    instance = await get_instance(session, principal, instance_id)
    if instance.status != "running":
        raise InstanceNotRunning(
            f"Instance {instance.id} is {instance.status}.", details={"status": instance.status}
        )
    node = await node_for(session, settings_of(request), instance.server_id)
    await session.execute(
        update(Instance).where(Instance.id == instance.id).values(last_activity_at=utcnow())
    )
    record = None
    if exec_command is not None:
        record = ExecRecord(
            id=new_id("exec"),
            instance_id=instance.id,
            org_id=instance.org_id,
            command=_command_text(exec_command)[:10000],
            status="running",
            streamed=streamed,
        )
        session.add(record)
    await session.commit()
    return instance, node, record


async def _touch(session: AsyncSession, instance_id: str) -> None:
    """Activity at the end of a long operation counts too."""
    await session.execute(
        update(Instance).where(Instance.id == instance_id).values(last_activity_at=utcnow())
    )


def _command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def _node_exec_body(body: schemas.ExecRequest, request: Request) -> dict[str, Any]:
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
    id: str, body: schemas.ExecRequest, request: Request, session: DbSession, principal: Writer
) -> schemas.ExecResultOut:
    """Run a command to completion and return its exit code and output."""
    instance, node, record = await _running_node(
        request, session, principal, id, exec_command=body.command
    )
    assert record is not None
    try:
        result = await node.json(
            "POST",
            f"/node/instances/{instance.id}/exec",
            _node_exec_body(body, request),
            timeout=(body.timeout_s or settings_of(request).exec_default_timeout_s) + 30,
        )
    except BaseException:
        # The request's transaction rolls back; the record closes in its own.
        await _finish_record(database(request), record.id, "failed", None, None)
        raise
    stdout, stderr, encoding = _text_or_b64(
        b64decode(result["stdout_b64"]), b64decode(result["stderr_b64"])
    )
    record.status = "timed_out" if result["timed_out"] else "exited"
    record.exit_code = result["exit_code"]
    record.duration_ms = result["duration_ms"]
    record.finished_at = utcnow()
    await _touch(session, instance.id)
    return schemas.ExecResultOut(
        exec_id=record.id,
        exit_code=result["exit_code"],
        stdout=stdout,
        stderr=stderr,
        encoding=encoding,
        timed_out=result["timed_out"],
        truncated=result["truncated"],
        duration_ms=result["duration_ms"],
        signal=result.get("signal"),
    )


def _sse(event: str, seq: int, data: dict[str, Any]) -> bytes:
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
    id: str, body: schemas.ExecRequest, request: Request, session: DbSession, principal: Writer
) -> StreamingResponse:
    """SSE stream of exec frames: `start` {exec_id, pid}, `stdout`/`stderr` {data}, then `exit` {exit_code, duration_ms} or `error`. A client that disconnects has its process killed."""
    instance, node, record = await _running_node(
        request, session, principal, id, exec_command=body.command, streamed=True
    )
    assert record is not None
    db = database(request)
    exec_id = record.id
    node_body = _node_exec_body(body, request)

    async def events() -> AsyncIterator[bytes]:
        seq = 0
        status, exit_code, duration = "killed", None, None
        frames = node.stream(f"/node/instances/{instance.id}/exec/stream", node_body).__aiter__()
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
                    yield _sse("start", seq, {"exec_id": exec_id, "pid": frame.get("pid")})
                elif kind in ("stdout", "stderr"):
                    raw = b64decode(frame.get("data_b64"))
                    try:
                        yield _sse(kind, seq, {"data": raw.decode("utf-8")})
                    except UnicodeDecodeError:
                        yield _sse(
                            kind,
                            seq,
                            {"data": base64.b64encode(raw).decode(), "encoding": "base64"},
                        )
                elif kind == "exit":
                    exit_code, duration = frame.get("exit_code"), frame.get("duration_ms")
                    status = "timed_out" if frame.get("timed_out") else "exited"
                    yield _sse(
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
                    yield _sse(
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
            yield _sse("error", seq + 1, {"code": exc.code, "message": exc.message})
        finally:
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await frames.aclose()  # type: ignore[attr-defined]
            await _finish_record(db, exec_id, status, exit_code, duration, instance.id)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _finish_record(
    db: Database,
    exec_id: str,
    status: str,
    exit_code: int | None,
    duration: float | None,
    instance_id: str | None = None,
) -> None:
    async def write() -> None:
        async with db.transaction() as s:
            await s.execute(
                update(ExecRecord)
                .where(ExecRecord.id == exec_id)
                .values(
                    status=status, exit_code=exit_code, duration_ms=duration, finished_at=utcnow()
                )
            )
            if instance_id is not None:
                await _touch(s, instance_id)

    # Shielded: a disconnecting client cancels the stream, but the record must still close.
    with contextlib.suppress(Exception):
        await asyncio.shield(write())


@exec_router.get("/{id}/exec", response_model=Page[schemas.ExecRecordOut])
async def list_execs(
    id: str,
    session: DbSession,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[schemas.ExecRecordOut]:
    """Recent execs in this instance: command, status, exit code and timings, newest first."""
    instance = await get_instance(session, principal, id)
    rows = (
        await session.execute(
            select(ExecRecord)
            .where(ExecRecord.instance_id == instance.id)
            .order_by(ExecRecord.created_at.desc(), ExecRecord.id.desc())
            .limit(limit)
        )
    ).scalars()
    return Page(
        data=[
            schemas.ExecRecordOut(
                id=r.id,
                command=r.command,
                status=r.status,
                exit_code=r.exit_code,
                streamed=r.streamed,
                duration_ms=r.duration_ms,
                created_at=r.created_at,
                finished_at=r.finished_at,
            )
            for r in rows
        ],
        next_cursor=None,
    )


# --- files ---


def _entry(e: dict[str, Any]) -> schemas.FileEntry:
    return schemas.FileEntry(
        name=e["name"],
        path=e["path"],
        type=e["type"],
        size=e["size"],
        mode=e["mode"],
        modified_at=datetime.fromtimestamp(e["mtime"], UTC),
        target=e.get("target"),
    )


@files_router.get(
    "/{id}/files",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes."}
    },
)
async def read_file(
    id: str,
    request: Request,
    session: DbSession,
    principal: Reader,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Response:
    """The file's bytes."""
    instance, node, _ = await _running_node(request, session, principal, id)
    data = await node.read_bytes(f"/node/instances/{instance.id}/files/read", {"path": path})
    return Response(data, media_type="application/octet-stream")


@files_router.post("/{id}/files", response_model=schemas.FileEntry)
async def write_file(
    id: str, body: schemas.FileWrite, request: Request, session: DbSession, principal: Writer
) -> schemas.FileEntry:
    """Write a file (UTF-8 text or base64 bytes), creating parent directories unless told not to."""
    try:
        raw = (
            base64.b64decode(body.content, validate=True)
            if body.encoding == "base64"
            else body.content.encode()
        )
    except ValueError as exc:
        raise BadRequest("content is not valid base64.") from exc
    instance, node, _ = await _running_node(request, session, principal, id)
    info = await node.json(
        "POST",
        f"/node/instances/{instance.id}/files/write",
        {
            "path": body.path,
            "content_b64": base64.b64encode(raw).decode(),
            "mode": body.mode if body.mode is not None else 0o644,
            "make_parents": body.make_parents,
        },
    )
    return _entry(info)


@files_router.post("/{id}/files/edit", response_model=schemas.EditResultOut)
async def edit_file(
    id: str, body: schemas.FileEdit, request: Request, session: DbSession, principal: Writer
) -> schemas.EditResultOut:
    """Replace exactly one occurrence of old_str (or all with replace_all); with zero or several matches nothing changes and the count is reported."""
    instance, node, _ = await _running_node(request, session, principal, id)
    r = await node.json("POST", f"/node/instances/{instance.id}/files/edit", body.model_dump())
    if r["replaced"] == 0:
        if r["count"] == 0:
            raise EditNoMatch(details={"count": 0, "path": body.path})
        raise EditNotUnique(
            f"old_str occurs {r['count']} times; nothing was changed.",
            details={"count": r["count"], "path": body.path},
        )
    return schemas.EditResultOut(path=body.path, replaced=r["replaced"], count=r["count"])


@files_router.get("/{id}/files/list", response_model=Page[schemas.FileEntry])
async def list_files(
    id: str,
    request: Request,
    session: DbSession,
    principal: Reader,
    path: Annotated[str, Query(max_length=4096)] = "/",
    depth: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Page[schemas.FileEntry]:
    """Entries under a directory (to `depth` levels): name, path, type, size, mode, modified time."""
    instance, node, _ = await _running_node(request, session, principal, id)
    r = await node.json(
        "POST", f"/node/instances/{instance.id}/files/list", {"path": path, "depth": depth}
    )
    return Page(data=[_entry(e) for e in r["entries"]], next_cursor=None)
