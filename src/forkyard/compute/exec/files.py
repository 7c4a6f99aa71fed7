"""Files inside an instance (tag files): read (streamed, by range), write, edit by exact
match, list. Paths resolve inside the instance's own mount namespace (the guest agent)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from forkyard.compute import schemas
from forkyard.compute.errors import EditNoMatch, EditNotUnique, FileTooLarge
from forkyard.compute.exec.claim import claim
from forkyard.compute.exec.routers import files_router
from forkyard.compute.node_client import RemoteError
from forkyard.identity.deps import Reader, Writer, settings_of
from forkyard.kit.errors import BadRequest
from forkyard.kit.pagination import Page
from forkyard.node.contract import ReadFileIn
from forkyard.node.rpc import FILE_WRITE_MAX


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
    target = await claim(request, principal, id)
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
    target = await claim(request, principal, id)
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
    target = await claim(request, principal, id)
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
    target = await claim(request, principal, id)
    r = await target.call("files.list", {"path": path, "depth": depth})
    await target.settle()
    return Page(data=[_entry(e) for e in r["entries"]], next_cursor=None)
