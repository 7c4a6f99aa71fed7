"""GET /v1/instances/{id}/exec: the instance's recent execs, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy import select

from forkyard.compute import schemas
from forkyard.compute.exec.claim import closed
from forkyard.compute.exec.routers import exec_router
from forkyard.compute.models import ExecRecord
from forkyard.compute.service import get_instance
from forkyard.db.session import DbSession
from forkyard.identity.deps import Reader
from forkyard.kit.pagination import Page


@exec_router.get("/{id}/exec", response_model=Page[schemas.ExecRecordOut])
async def list_execs(
    id: str,
    session: DbSession,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[schemas.ExecRecordOut]:
    """Recent execs in this instance: command, status, exit code and timings, newest first."""
    instance = await get_instance(session, principal, id)
    await closed(instance.id)
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
