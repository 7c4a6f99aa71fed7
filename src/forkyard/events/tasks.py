"""Events do not pile up: events older than `events_retention_days` are deleted, with the
record of which subscribers ran for them (the events API and its streams read back that far;
webhook deliveries and notices made from them keep their own copy)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from forkyard.events.models import EventRecord, SubscriberRun
from forkyard.jobs.queue import JobContext, periodic
from forkyard.kit.clock import utcnow
from forkyard.kit.ids import id_floor

PRUNE_EVERY_S = 600.0
# Rows deleted per statement, and statements per run: a large backlog (a lowered setting) is
# worked off over several runs rather than in one long transaction.
BATCH = 5_000
BATCHES_PER_RUN = 20


def retention_floor(retention_days: int) -> str:
    """Every event id (and subscriber run) below this is past retention. Ids are time-ordered,
    so the primary keys bound the deletes (no index on created_at needed)."""
    cutoff = utcnow() - timedelta(days=retention_days)
    return id_floor("evt", int(cutoff.timestamp() * 1000))


@periodic("events.prune", PRUNE_EVERY_S)
async def prune_old_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    floor = retention_floor(ctx.settings.events_retention_days)
    await ctx.session.execute(delete(SubscriberRun).where(SubscriberRun.event_id < floor))
    for _ in range(BATCHES_PER_RUN):
        batch = select(EventRecord.id).where(EventRecord.id < floor).limit(BATCH)
        result = await ctx.session.execute(delete(EventRecord).where(EventRecord.id.in_(batch)))
        if result.rowcount < BATCH:  # type: ignore[attr-defined]
            break
