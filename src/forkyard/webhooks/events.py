"""The facts of webhooks, and the subscriber that turns every catalogued event of an org into
one delivery per matching endpoint (forkyard.events; docs/adr/0016-webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import ColumnElement, exists

from forkyard.events import CATALOGUE, Event, subscriber
from forkyard.jobs.queue import JobContext
from forkyard.webhooks.listening import has_endpoint_for
from forkyard.webhooks.queries import create_deliveries, wanting_endpoints


class WebhookEvent(Event):
    resource_type: ClassVar[str] = "webhook"


class WebhookTest(WebhookEvent):
    """Sent by POST /v1/webhooks/{id}/test to that endpoint only (never stored as an event)."""

    type = "webhook.test"
    url: str


class WebhookDisabled(WebhookEvent):
    """Every attempt to reach the endpoint failed for `webhooks_disable_after_s`; its pending
    deliveries went to the dead-letter queue. Its org's owners and admins are told."""

    type = "webhook.disabled"
    url: str
    failing_since: datetime


def public_event_types() -> list[type[Event]]:
    """The documented catalogue: every event class the platform declares (not tests')."""
    return sorted(
        (cls for cls in CATALOGUE.values() if cls.__module__.startswith("forkyard.")),
        key=lambda cls: (cls.type, cls.version),
    )


FAN_OUT = "webhooks.fan_out"


async def fan_out(ctx: JobContext, event: Event) -> None:
    await create_deliveries(ctx.session, event.record)


def endpoint_wants(
    org_id: ColumnElement[str], event_type: ColumnElement[str]
) -> ColumnElement[bool]:
    """emit()'s question for the fan-out: an enabled endpoint of the event's org asks for its
    type or "*" (create_deliveries' own filter), so an org without one gets no fan-out job."""
    return exists(wanting_endpoints(org_id, event_type))


def subscribe_to_catalogue() -> None:
    """One fan-out subscriber per catalogued type (the kernel matches types exactly); called by
    forkyard.tasks.load_all_tasks once every domain's events are imported."""
    for cls in public_event_types():
        if cls.type != WebhookTest.type:
            subscriber(
                cls.type,
                name=f"{FAN_OUT}:{cls.type}",
                audience=has_endpoint_for,
                condition=endpoint_wants,
            )(fan_out)
