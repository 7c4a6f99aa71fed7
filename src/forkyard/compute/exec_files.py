"""Exec (plain and streamed) and files inside an instance (tags exec, files). Every file path
resolves inside the instance's own mount namespace: the guest agent does the work in there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import shlex
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Table, bindparam, exists, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from forkyard.compute import schemas
from forkyard.compute.errors import (
    EditNoMatch,
    EditNotUnique,
    FileTooLarge,
    InstanceNotRunning,
    NodeUnreachable,
)
from forkyard.compute.models import ComputeServer, ExecRecord, Instance
from forkyard.compute.node_client import NodeClient, RemoteError, b64decode, node_clients
from forkyard.compute.service import get_instance
from forkyard.db.changes import ListenedCache, changes
from forkyard.db.engine import Database, plain_sql
from forkyard.db.session import DbSession, database
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.identity.principal import Principal
from forkyard.kit.clock import utcnow
from forkyard.kit.errors import BadRequest, ForkyardError, NotFound
from forkyard.kit.ids import has_prefix, new_id
from forkyard.kit.pagination import Page
from forkyard.kit.routing import protected_router
from forkyard.node.contract import ExecStreamIn, ReadFileIn
from forkyard.node.rpc import FILE_WRITE_MAX

exec_router = protected_router("exec", prefix="/v1/instances")
files_router = protected_router("files", prefix="/v1/instances")

KEEPALIVE_S = 15.0
log = logging.getLogger("forkyard.compute.exec")


@dataclass
class Target:
    """A running instance and its node, claimed for one exec or file operation."""

    instance_id: str
    node: NodeClient
    db: Database
    exec_id: str | None = None
    streamed: bool = False
    # The claim's writes, when the route came from the cache and they run beside the call.
    claimed: asyncio.Task[None] | None = None

    async def call(self, op: str, params: dict[str, Any], *, timeout: float = 60.0) -> Any:
        try:
            return await self.node.call(op, self.instance_id, params, timeout=timeout)
        except (RemoteError, NodeUnreachable):
            routes.forget(self.instance_id)  # perhaps it moved or stopped: ask the database
            raise

    async def settle(self) -> None:
        """Wait for the claim's writes if they ran beside the call (a failure there costs
        only bookkeeping, never the user's answer)."""
        if self.claimed is not None:
            with contextlib.suppress(Exception):
                await self.claimed

    async def finish(
        self, status: str, exit_code: int | None = None, duration: float | None = None
    ) -> None:
        """Close the exec's record, and stamp the instance's activity, once the node has
        answered. A failure here costs only the record, never the user's answer."""
        await self.settle()
        params = {
            "p_id": self.exec_id,
            "p_instance_id": self.instance_id,
            "p_status": status,
            "p_exit_code": exit_code,
            "p_duration_ms": duration,
            "p_now": utcnow(),
        }
        try:
            await self.db.plain(EXEC_ENDED, params)
        except Exception:
            log.exception("closing exec record %s failed", self.exec_id)


@dataclass(frozen=True)
class _Server:
    id: str
    url: str
    secret_encrypted: str


@dataclass(frozen=True)
class _Route:
    """Where a running instance runs, as a claim found it."""

    org_id: str
    server: _Server


# Running instances' routes, by instance id (db/changes.py). A change to an instance's status,
# server or org, or to any server's address, is announced on `forkyard_instances`
# (db/migrations/repeatable/instance_changes.sql).
routes = changes.register(
    ListenedCache[_Route](
        "forkyard_instances", ttl_s=30.0, tables=("compute_servers",), keyed_by="instances"
    )
)


def _hot_statements() -> tuple[str, str, str]:
    """The exec hot path's statements, compiled once for `Database.plain()` (ADR 0008).

    CLAIM: the instance and its server, and, when it is running, its activity stamp (for the
    idle timeout) in the same statement. CLAIM_EXEC: the same, and the exec's `running` record,
    which the idle sweep honours while a long command runs. EXEC_ENDED: the record's end and a
    second activity stamp (idleness counts from the end of a command)."""
    instances: Table = Instance.__table__  # type: ignore[assignment]
    records: Table = ExecRecord.__table__  # type: ignore[assignment]
    target = (
        select(
            Instance.id.label("instance_id"),
            Instance.status,
            ComputeServer.id.label("server_id"),
            ComputeServer.url,
            ComputeServer.secret_encrypted,
        )
        .select_from(Instance)
        .outerjoin(ComputeServer, ComputeServer.id == Instance.server_id)
        .where(Instance.id == bindparam("p_instance_id"), Instance.org_id == bindparam("p_org_id"))
        .cte("target")
    )
    running = select(target.c.instance_id).where(target.c.status == literal_column("'running'"))
    touched = (
        update(instances)
        .where(instances.c.id.in_(running))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    started_columns = ("id", "instance_id", "org_id", "command", "streamed")
    started = (
        pg_insert(records)
        .from_select(
            [*started_columns, "status", "created_at"],
            select(
                *(bindparam(f"p_{c}", type_=records.c[c].type) for c in started_columns),
                literal_column("'running'"),
                bindparam("p_now", type_=records.c.created_at.type),
            ).where(exists(select(touched.c.id))),
        )
        .cte("started")
    )
    claim = select(target.c.status, target.c.server_id, target.c.url, target.c.secret_encrypted)
    # The end touches the instance unconditionally: the claim already checked the org.
    touched_at_end = (
        update(instances)
        .where(instances.c.id == bindparam("p_instance_id"))
        .values(last_activity_at=bindparam("p_now"))
        .returning(instances.c.id)
        .cte("touched")
    )
    ended = (
        update(records)
        .where(records.c.id == bindparam("p_id"))
        .values(
            status=bindparam("p_status"),
            exit_code=bindparam("p_exit_code"),
            duration_ms=bindparam("p_duration_ms"),
            finished_at=bindparam("p_now"),
        )
        .add_cte(touched_at_end)
    )
    return (
        plain_sql(claim.add_cte(touched)),
        plain_sql(claim.add_cte(touched).add_cte(started)),
        plain_sql(ended),
    )


CLAIM, CLAIM_EXEC, EXEC_ENDED = _hot_statements()


async def _target(
    request: Request,
    principal: Principal,
    instance_id: str,
    *,
    exec_command: str | list[str] | None = None,
    streamed: bool = False,
) -> Target:
    """Claim the running instance for one call: its node, its activity stamp and (for an
    exec) the exec's `running` record, in one statement on a plain connection held only for
    that statement, so nothing is held while the instance works. When the instance's route is
    cached, the statement runs beside the node call instead of before it. This is the exec hot
    path (ADR 0007, bench/compute.py)."""
    if not has_prefix(instance_id, "inst") or principal.org_id is None:
        raise NotFound.of("Instance", instance_id)
    db = database(request)
    params: dict[str, Any] = {
        "p_instance_id": instance_id,
        "p_org_id": principal.org_id,
        "p_now": utcnow(),
    }
    if exec_command is not None:
        params["p_id"] = new_id("exec")
        params["p_command"] = _command_text(exec_command)[:10000]
        params["p_streamed"] = streamed
    statement = CLAIM if exec_command is None else CLAIM_EXEC
    secret_key = settings_of(request).secret_key
    route = routes.get(instance_id)
    if route is not None and route.org_id == principal.org_id:
        target = Target(
            instance_id=instance_id,
            node=node_clients.for_server(route.server, secret_key),
            db=db,
            exec_id=params.get("p_id"),
            streamed=streamed,
        )
        target.claimed = asyncio.create_task(_claim_beside(db, statement, params))
        return target
    generation = routes.generation
    row = await db.plain(statement, params)
    if row is None:
        raise NotFound.of("Instance", instance_id)
    status, server_id, url, secret = row
    if status != "running":
        raise InstanceNotRunning(f"Instance {instance_id} is {status}.", details={"status": status})
    if server_id is None:
        raise NodeUnreachable()
    server = _Server(server_id, url, secret)
    routes.put(instance_id, _Route(principal.org_id, server), generation)
    return Target(
        instance_id=instance_id,
        node=node_clients.for_server(server, secret_key),
        db=db,
        exec_id=params.get("p_id"),
        streamed=streamed,
    )


async def _claim_beside(db: Database, statement: str, params: dict[str, Any]) -> None:
    """The claim's writes for a cached route. Should the database no longer see the instance
    running (the announcement is still on its way), the route is dropped; the node, which
    knows, has answered the call already."""
    row = await db.plain(statement, params)
    if row is None or row[0] != "running":
        routes.forget(params["p_instance_id"])


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
    id: str,
    body: schemas.ExecRequest,
    request: Request,
    principal: Writer,
) -> Response:
    """Run a command to completion and return its exit code and output."""
    node_body = _node_exec_body(body, request)
    target = await _target(request, principal, id, exec_command=body.command)
    assert target.exec_id is not None
    try:
        result = await target.call("exec", node_body, timeout=node_body["timeout_s"] + 30)
    except BaseException:
        await asyncio.shield(target.finish("failed"))
        raise
    _close_beside_answer(
        target.finish(
            "timed_out" if result["timed_out"] else "exited",
            result["exit_code"],
            result["duration_ms"],
        ),
        target.instance_id,
    )
    stdout, stderr, encoding = _text_or_b64(
        b64decode(result["stdout_b64"]), b64decode(result["stderr_b64"])
    )
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


# Exec records being closed while their answers go out, by instance.
_closing: dict[str, set[asyncio.Task[None]]] = {}


def _close_beside_answer(finish: Coroutine[Any, Any, None], instance_id: str) -> None:
    """Close an exec's record while its answer is sent rather than before: the caller has the
    result already, and the round trip is a tenth of the route's time (ADR 0007). The history
    (`list_execs`) waits for the records this process is still closing, so a caller always sees
    its own execs finished. A record a crash leaves `running` keeps no instance up past the
    longest exec timeout (service.stop_idle_instances)."""
    task = asyncio.create_task(finish)
    closing = _closing.setdefault(instance_id, set())
    closing.add(task)

    def closed(done: asyncio.Task[None]) -> None:
        closing.discard(done)
        if not closing:
            _closing.pop(instance_id, None)

    task.add_done_callback(closed)


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
    id: str, body: schemas.ExecRequest, request: Request, principal: Writer
) -> StreamingResponse:
    """SSE stream of exec frames: `start` {exec_id, pid}, `stdout`/`stderr` {data}, then `exit` {exit_code, duration_ms} or `error`. A client that disconnects has its process killed."""
    node_body = _node_exec_body(body, request)
    target = await _target(request, principal, id, exec_command=body.command, streamed=True)
    instance_id, node, exec_id = target.instance_id, target.node, target.exec_id

    async def events() -> AsyncIterator[bytes]:
        seq = 0
        status, exit_code, duration = "killed", None, None
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
    await asyncio.gather(*_closing.get(instance.id, ()))
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
    principal: Reader,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """A regular file's bytes, streamed; `offset` and `limit` read a range. A whole file over the server's read limit (or a range past it) is 400 `file_too_large`; a device, FIFO or socket is 400 `not_a_regular_file`."""
    max_bytes = settings_of(request).file_read_max_bytes
    if limit is not None and limit > max_bytes:
        raise FileTooLarge(
            f"Read at most {max_bytes} bytes at a time.", details={"max_bytes": max_bytes}
        )
    target = await _target(request, principal, id)
    try:
        chunks = await target.node.read_file(
            target.instance_id,
            ReadFileIn(path=path, offset=offset, limit=limit, max_size=max_bytes),
        )
    except RemoteError as exc:
        if exc.code == "file_too_large":
            exc.details = {**exc.details, "max_bytes": max_bytes}
        raise
    finally:
        await target.settle()
    return StreamingResponse(chunks, media_type="application/octet-stream")


@files_router.post("/{id}/files", response_model=schemas.FileEntry)
async def write_file(
    id: str, body: schemas.FileWrite, request: Request, principal: Writer
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
    target = await _target(request, principal, id)
    mode = body.mode if body.mode is not None else 0o644
    if len(raw) > FILE_WRITE_MAX:
        # Too large for one message on the node's shared call channel: streamed over HTTP.
        written = await target.node.write_file(
            target.instance_id, body.path, raw, mode=mode, make_parents=body.make_parents
        )
        info = written.model_dump()
    else:
        info = await target.call(
            "files.write",
            {
                "path": body.path,
                "content_b64": base64.b64encode(raw).decode(),
                "mode": mode,
                "make_parents": body.make_parents,
            },
        )
    await target.settle()
    return _entry(info)


@files_router.post("/{id}/files/edit", response_model=schemas.EditResultOut)
async def edit_file(
    id: str, body: schemas.FileEdit, request: Request, principal: Writer
) -> schemas.EditResultOut:
    """Replace exactly one occurrence of old_str (or all with replace_all); with zero or several matches nothing changes and the count is reported."""
    target = await _target(request, principal, id)
    r = await target.call("files.edit", body.model_dump())
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
    principal: Reader,
    path: Annotated[str, Query(max_length=4096)] = "/",
    depth: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Page[schemas.FileEntry]:
    """Entries under a directory (to `depth` levels): name, path, type, size, mode, modified time."""
    target = await _target(request, principal, id)
    r = await target.call("files.list", {"path": path, "depth": depth})
    await target.settle()
    return Page(data=[_entry(e) for e in r["entries"]], next_cursor=None)
