"""Finished jobs do not pile up: done and failed jobs older than `job_retention_s` are deleted
(their payloads are sealed, but a table of every email ever sent is still a liability)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from forkyard.jobs.models import Job
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow

PRUNE_EVERY_S = 600.0


@periodic("jobs.prune", PRUNE_EVERY_S)
async def prune_finished_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    cutoff = utcnow() - timedelta(seconds=ctx.settings.job_retention_s)
    await ctx.session.execute(
        delete(Job).where(Job.status.in_(("done", "failed")), Job.finished_at < cutoff)
    )
