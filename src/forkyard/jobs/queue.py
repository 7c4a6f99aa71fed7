"""Enqueue jobs inside the caller's transaction; register handlers by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.jobs.models import Job
from forkyard.kit.clock import utcnow
from forkyard.kit.crypto import decrypt, encrypt
from forkyard.kit.ids import new_id


@dataclass
class JobContext:
    """What a handler gets: the job's own transaction and the running settings."""

    session: AsyncSession
    settings: Settings
    job_id: str
    attempt: int


JobHandler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]

HANDLERS: dict[str, JobHandler] = {}
# Periodic work every worker runs on a timer (idempotent sweeps): name -> (seconds, handler).
PERIODIC: dict[str, tuple[float, JobHandler]] = {}


def job(name: str) -> Callable[[JobHandler], JobHandler]:
    """Register a handler. Handlers take ids in the payload, reload state, and are safe to re-run."""

    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[name] = fn
        return fn

    return register


def periodic(name: str, every_s: float) -> Callable[[JobHandler], JobHandler]:
    """Register a sweep the worker runs every `every_s` seconds in its own transaction."""

    def register(fn: JobHandler) -> JobHandler:
        PERIODIC[name] = (every_s, fn)
        return fn

    return register


SEAL_PURPOSE = "job-payload"


def seal(session: AsyncSession, value: str) -> str:
    """Encrypt a one-time secret (a sign-in link, a code) for a job's payload: job rows outlive
    the secrets they carry and are read by anyone who can read the table."""
    key = session.info.get("secret_key")
    if not key:
        raise RuntimeError("this session's Database has no secret_key in its info")
    return encrypt(str(key), SEAL_PURPOSE, value)


def unseal(ctx: JobContext, value: str) -> str:
    return decrypt(ctx.settings.secret_key, SEAL_PURPOSE, value)


async def enqueue(
    session: AsyncSession,
    name: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    max_attempts: int = 5,
) -> Job:
    """Add a job to the caller's transaction: it exists (and runs) only if that transaction commits."""
    row = Job(
        name=name,
        payload=payload or {},
        run_at=run_at or utcnow(),
        max_attempts=max_attempts,
        status="queued",
        attempts=0,
    )
    session.add(row)
    if run_at is None or run_at <= utcnow():
        # NOTIFY is transactional too: workers wake only once the job is visible. A job due
        # later wakes nobody now; the workers' poll finds it when it is due.
        await session.execute(text("SELECT pg_notify('forkyard_jobs', :name)"), {"name": name})
    return row


async def enqueue_many(
    session: AsyncSession,
    name: str,
    payloads: list[dict[str, Any]],
    *,
    max_attempts: int = 5,
) -> None:
    """Add one job per payload, due now, to the caller's transaction in one statement and one
    NOTIFY: a fan-out of a hundred jobs costs two round trips instead of two hundred."""
    if not payloads:
        return
    now = utcnow()
    await session.execute(
        insert(Job),
        [
            {
                "id": new_id(Job.id_prefix),
                "created_at": now,
                "name": name,
                "payload": p,
                "run_at": now,
                "max_attempts": max_attempts,
                "status": "queued",
                "attempts": 0,
            }
            for p in payloads
        ],
    )
    await session.execute(text("SELECT pg_notify('forkyard_jobs', :name)"), {"name": name})
