"""Files on this node's instances that do not fit the call channel: streamed reads, and writes
too large for one of its messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from forkyard.node import contract as c
from forkyard.node import rpc
from forkyard.node.api.deps import Node

router = APIRouter(prefix="/node")

OCTETS = "application/octet-stream"


@router.post(
    "/instances/{instance_id}/files/read",
    response_class=StreamingResponse,
    responses={200: {"model": c.BytesOut, "content": {OCTETS: {}}}},
)
async def read_file(instance_id: str, body: c.ReadFileIn, node: Node) -> StreamingResponse:
    """A regular file's bytes, streamed as the agent sends them (the node holds at most one
    window of them); the agent's refusal is an error answer, before any byte."""
    reader = await node.driver.read_stream(
        instance_id, body.path, offset=body.offset, limit=body.limit, max_size=body.max_size
    )

    async def chunks() -> AsyncIterator[bytes]:
        async with reader:
            async for chunk in reader:
                yield chunk

    return StreamingResponse(chunks(), media_type=OCTETS)


@router.put("/instances/{instance_id}/files/content")
async def write_content(
    instance_id: str,
    request: Request,
    node: Node,
    path: str,
    mode: int = 0o644,
    make_parents: bool = True,
    offset: Annotated[int | None, Query(ge=0)] = None,
) -> c.FileOut:
    """Write a file from the request body as it arrives (files too large for one message
    on the call channel): the agent's credit paces the upload. With `offset`, the body goes
    into the file from there, the rest of it kept (SFTP's writes)."""
    info = await node.driver.write_file(
        instance_id,
        path,
        request.stream(),
        mode=mode,
        make_parents=make_parents,
        atomic=offset is None,
        offset=offset,
    )
    return c.FileOut.model_validate(rpc.file_json(info))
