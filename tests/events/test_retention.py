"""Events past `events_retention_days` are pruned with their subscriber runs; newer ones stay."""

from __future__ import annotations

import time

from sqlalchemy import select

from forkyard.events.models import EventRecord, SubscriberRun
from forkyard.events.tasks import prune_old_events
from forkyard.jobs.queue import JobContext
from forkyard.kit.ids import id_floor

DAY_MS = 24 * 3600 * 1000


def event_made_days_ago(days: float) -> EventRecord:
    at_ms = int(time.time() * 1000 - days * DAY_MS)
    return EventRecord(
        id=id_floor("evt", at_ms)[:-4] + "abcd",
        org_id="org_x",
        type="api_key.created",
        version=1,
        resource_type="api_key",
        resource_id="key_x",
        actor_type="system",
        actor_id=None,
        payload={},
    )


async def test_prune_deletes_only_events_past_retention(db, settings):
    settings.events_retention_days = 90
    old, recent = event_made_days_ago(91), event_made_days_ago(89)
    async with db.transaction() as s:
        s.add_all([old, recent])
        await s.flush()
        s.add_all(
            [
                SubscriberRun(event_id=old.id, subscriber="webhooks.fan_out:api_key.created"),
                SubscriberRun(event_id=recent.id, subscriber="webhooks.fan_out:api_key.created"),
            ]
        )
    async with db.transaction() as s:
        await prune_old_events(
            JobContext(session=s, settings=settings, job_id="job_test", attempt=1), {}
        )
    async with db.transaction() as s:
        assert list((await s.execute(select(EventRecord.id))).scalars()) == [recent.id]
        runs = list((await s.execute(select(SubscriberRun.event_id))).scalars())
        assert runs == [recent.id]
