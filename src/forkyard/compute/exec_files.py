"""Exec (plain and streamed) and files inside an instance (tags exec, files). Every file path
resolves inside the instance's own mount namespace: the guest agent does the work in there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.compute import schemas
from forkyard.compute.errors import (
    EditNoMatch,
    EditNotUnique,
    InstanceNotRunning,
    NodeUnreachable,
)
from forkyard.compute.models import ComputeServer, ExecRecord, Instance
from forkyard.compute.node_client import NodeClient, b64decode, node_clients
from forkyard.compute.service import get_instance
from forkyard.db.engine import Database
from forkyard.db.session import DbSession, database
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import BadRequest, ForkyardError, NotFound
from forkyard.kit.ids import has_prefix, new_id
from forkyard.kit.pagination import Page
from forkyard.kit.routing import protected_router

exec_router = protected_router("exec", prefix="/v1/instances")
files_router = protected_router("files", prefix="/v1/instances")

KEEPALIVE_S = 15.0


@dataclass
class Target:
    """A running instance, its node, and the bookkeeping started beside the node call."""

    instance: Instance
    node: NodeClient
    db: Database
    exec_id: str | None = None
    command: str = ""
    streamed: bool = False
    started: asyncio.Task[None] | None = None

    async def finish(
        self, status: str, exit_code: int | None = None, duration: float | None = None
    ) -> None:
        """Close the exec record (and count the activity) once the node has answered. Its own
        short transaction: the request's may be rolling back."""
        await self.settle()
        await _write_activity(
            self.db,
            self.instance,
            self._record(status, exit_code, duration, utcnow()) if self.exec_id else None,
        )

    async def settle(self) -> None:
        """Wait for the bookkeeping started beside the node call (a failure there only costs
        an activity stamp, never the user's call)."""
        if self.started is not None:
            with contextlib.suppress(Exception):
                await self.started

    def _record(
        self, status: str, exit_code: int | None, duration: float | None, finished: Any
    ) -> dict[str, Any]:
        return {
            "id": self.exec_id,
            "instance_id": self.instance.id,
            "org_id": self.instance.org_id,
            "command": self.command,
            "status": status,
            "streamed": self.streamed,
            "exit_code": exit_code,
            "duration_ms": duration,
            "finished_at": finished,
        }


def _activity_statements() -> tuple[Any, Any, Any]:
    """The bookkeeping statements, built once with bound parameters: building SQLAlchemy
    statements per call costs more CPU than running them (bench/compute.py). One statement each:
    the instance's last activity (for the idle timeout) and, for an exec, its record. The start
    and the end of an exec race when the command is quick; the end wins, whichever lands first."""
    instances: Table = Instance.__table__  # type: ignore[assignment]
    table: Table = ExecRecord.__table__  # type: ignore[assignment]
    touched = (
        update(instances)
        .where(instances.c.id == bindparam("p_instance_id"))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    columns = (
        "id", "instance_id", "org_id", "command", "status", "streamed",
        "exit_code", "duration_ms", "finished_at",
    )  # fmt: skip
    # Parameter names must not be column names: SQLAlchemy would read those as more SET values.
    insert = pg_insert(table).values(
        created_at=bindparam("p_now"), **{c: bindparam(f"p_{c}") for c in columns}
    )
    start = insert.on_conflict_do_nothing(index_elements=[table.c.id]).add_cte(touched)
    end = insert.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={k: insert.excluded[k] for k in ("status", "exit_code", "duration_ms", "finished_at")},
    ).add_cte(touched)
    return select(touched.c.id), start, end


TOUCH, EXEC_STARTED, EXEC_ENDED = _activity_statements()


async def _write_activity(
    db: Database, instance: Instance, record: dict[str, Any] | None, *, final: bool = True
) -> None:
    params = {"p_now": utcnow(), **{f"p_{k}": v for k, v in (record or {}).items()}}
    params["p_instance_id"] = instance.id
    stmt = TOUCH if record is None else EXEC_ENDED if final else EXEC_STARTED
    async with db.autocommit() as conn:
        await conn.execute(stmt, params)


async def _target(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    instance_id: str,
    *,
    exec_command: str | list[str] | None = None,
    streamed: bool = False,
) -> Target:
    """The running instance and its node in one query. Ends the request's transaction, so no
    connection is held while the instance works, and starts the bookkeeping (activity, and the
    exec's `running` record that the idle sweep honours) on its own connection, beside the
    node call rather than before it: this is the exec hot path (bench/compute.py)."""
    if not has_prefix(instance_id, "inst"):
        raise NotFound.of("Instance", instance_id)
    row = (
        await session.execute(
            select(Instance, ComputeServer)
            .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
            .where(Instance.id == instance_id, Instance.org_id == principal.org_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound.of("Instance", instance_id)
    instance, server = row
    if instance.status != "running":
        raise InstanceNotRunning(
            f"Instance {instance.id} is {instance.status}.", details={"status": instance.status}
        )
    if server is None:
        raise NodeUnreachable()
    await session.commit()
    target = Target(
        instance=instance,
        node=node_clients.for_server(server, settings_of(request).secret_key),
        db=database(request),
    )
    record = None
    if exec_command is not None:
        target.exec_id = new_id("exec")
        target.command = _command_text(exec_command)[:10000]
        target.streamed = streamed
        record = target._record("running", None, None, None)
    target.started = asyncio.create_task(_write_activity(target.db, instance, record, final=False))
    return target


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
    node_body = _node_exec_body(body, request)
    target = await _target(request, session, principal, id, exec_command=body.command)
    assert target.exec_id is not None
    try:
        result = await target.node.call(
            "exec", target.instance.id, node_body, timeout=node_body["timeout_s"] + 30
        )
    except BaseException:
        await asyncio.shield(target.finish("failed"))
        raise
    await target.finish(
        "timed_out" if result["timed_out"] else "exited",
        result["exit_code"],
        result["duration_ms"],
    )
    stdout, stderr, encoding = _text_or_b64(
        b64decode(result["stdout_b64"]), b64decode(result["stderr_b64"])
    )
    return schemas.ExecResultOut(
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
    node_body = _node_exec_body(body, request)
    target = await _target(
        request, session, principal, id, exec_command=body.command, streamed=True
    )
    instance, node, exec_id = target.instance, target.node, target.exec_id

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
            # Shielded: a disconnecting client cancels the stream, but the record must close.
            with contextlib.suppress(Exception):
                await asyncio.shield(target.finish(status, exit_code, duration))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


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
    target = await _target(request, session, principal, id)
    data = await target.node.read_bytes(
        f"/node/instances/{target.instance.id}/files/read", {"path": path}
    )
    await target.settle()
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
    target = await _target(request, session, principal, id)
    info = await target.node.call(
        "files.write",
        target.instance.id,
        {
            "path": body.path,
            "content_b64": base64.b64encode(raw).decode(),
            "mode": body.mode if body.mode is not None else 0o644,
            "make_parents": body.make_parents,
        },
    )
    await target.settle()
    return _entry(info)


@files_router.post("/{id}/files/edit", response_model=schemas.EditResultOut)
async def edit_file(
    id: str, body: schemas.FileEdit, request: Request, session: DbSession, principal: Writer
) -> schemas.EditResultOut:
    """Replace exactly one occurrence of old_str (or all with replace_all); with zero or several matches nothing changes and the count is reported."""
    target = await _target(request, session, principal, id)
    r = await target.node.call("files.edit", target.instance.id, body.model_dump())
    await target.settle()
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
    target = await _target(request, session, principal, id)
    r = await target.node.call("files.list", target.instance.id, {"path": path, "depth": depth})
    await target.settle()
    return Page(data=[_entry(e) for e in r["entries"]], next_cursor=None)
