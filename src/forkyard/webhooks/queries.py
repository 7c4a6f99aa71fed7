"""Queueing deliveries: one row per (event, endpoint) and its send job. Used by the fan-out
subscriber (webhooks/events.py) and by the service; it imports neither, so the subscriber no
longer reaches into the service, which emits webhook events of its own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, Text, select
from sqlalchemy.dialects.postgresql import array, insert
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.events.models import EventRecord
from forkyard.events.schemas import EventOut
from forkyard.jobs.queue import enqueue_many
from forkyard.kit.clock import rfc3339, utcnow
from forkyard.kit.ids import new_id
from forkyard.webhooks.models import WebhookDelivery, WebhookEndpoint

SEND_JOB = "webhooks.send"


def body_of(event: EventRecord) -> dict[str, Any]:
    """What is POSTed: Standard Webhooks' {type, timestamp, data}; data is the event as the
    events API shows it."""
    return {
        "type": event.type,
        "timestamp": rfc3339(event.created_at),
        "data": EventOut.of(event).model_dump(mode="json"),
    }


def wanting_endpoints(
    org_id: str | ColumnElement[str], event_type: str | ColumnElement[str]
) -> Select[Any]:
    """The ids of the org's enabled endpoints that want `event_type` (or "*"): who gets a
    delivery, and (as EXISTS) whether emit() queues the fan-out at all (webhooks/events.py).
    Not `owned()`: emit() builds this once with the event's org as a bound parameter; the org
    filter is still the statement's first condition."""
    wanted: list[Any] = [event_type, "*"]
    return select(WebhookEndpoint.id).where(
        WebhookEndpoint.org_id == org_id,
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.event_types.has_any(array(wanted, type_=Text)),
    )


async def create_deliveries(session: AsyncSession, event: EventRecord) -> int:
    """One delivery per enabled endpoint of the event's org that wants its type, each with a
    send job, in the caller's transaction. Safe to run twice (one row per endpoint and event)."""
    if event.org_id is None:
        return 0
    # Only the ids of the endpoints that want it: the filter runs in SQL, so an org with a
    # hundred endpoints for other types costs nothing here.
    endpoint_ids = (await session.execute(wanting_endpoints(event.org_id, event.type))).scalars()
    now = utcnow()
    body = body_of(event)
    rows = [
        {
            "id": new_id("msg"),
            "created_at": now,
            "org_id": event.org_id,
            "endpoint_id": endpoint_id,
            "event_id": event.id,
            "event_type": event.type,
            "body": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for endpoint_id in endpoint_ids
    ]
    if not rows:
        return 0
    # One statement for every endpoint, and one for their send jobs (an org with a hundred
    # endpoints would otherwise cost three round trips each); a row that exists already (a
    # second run) returns nothing and gets no second job.
    inserted = await session.execute(
        insert(WebhookDelivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        .returning(WebhookDelivery.id)
    )
    made = list(inserted.scalars())
    await enqueue_many(session, SEND_JOB, [{"delivery_id": d} for d in made], max_attempts=3)
    return len(made)
