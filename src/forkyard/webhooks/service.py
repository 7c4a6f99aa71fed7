"""The rules of webhooks: endpoints of an org, one delivery per (event, endpoint), attempts on
a schedule with jitter, the dead-letter queue, disabling an endpoint that keeps failing."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forkyard.config import Settings
from forkyard.db.tenancy import get_owned, owned
from forkyard.events import SYSTEM, Actor, emit
from forkyard.events.schemas import EventOut
from forkyard.jobs import enqueue, job
from forkyard.jobs.queue import JobContext
from forkyard.kit.clock import rfc3339, utcnow
from forkyard.kit.crypto import decrypt, encrypt
from forkyard.kit.errors import NotFound
from forkyard.kit.ids import has_prefix, new_id
from forkyard.webhooks import transport
from forkyard.webhooks.errors import NotDeadLettered, TooManyWebhooks, WebhookDisabled
from forkyard.webhooks.events import WebhookDisabled as WebhookDisabledEvent
from forkyard.webhooks.events import WebhookTest
from forkyard.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from forkyard.webhooks.queries import SEND_JOB

SECRET_PURPOSE = "webhook-secret"
# After attempt n fails, the next comes RETRY_DELAYS_S[n-1] later (+-10 % jitter, so endpoints
# that failed together do not all come back at once): about 27.6 hours in all, 8 attempts.
RETRY_DELAYS_S = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
JITTER = 0.1
ROTATION_OVERLAP = timedelta(hours=24)


def seal_secret(settings: Settings, secret: str) -> str:
    return encrypt(settings.secret_key, SECRET_PURPOSE, secret)


def live_secrets(settings: Settings, endpoint: WebhookEndpoint) -> list[str]:
    """The current secret, and the previous one while its 24 hours last."""
    secrets = [decrypt(settings.secret_key, SECRET_PURPOSE, endpoint.secret_sealed)]
    if (
        endpoint.previous_secret_sealed
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > utcnow()
    ):
        secrets.append(
            decrypt(settings.secret_key, SECRET_PURPOSE, endpoint.previous_secret_sealed)
        )
    return secrets


# --- endpoints ---


async def get_endpoint(session: AsyncSession, org_id: str | None, id: str) -> WebhookEndpoint:
    return await get_owned(session, WebhookEndpoint, id, org_id, kind="Webhook")


async def create_endpoint(
    session: AsyncSession,
    settings: Settings,
    org_id: str,
    *,
    url: str,
    description: str | None,
    event_types: list[str],
    enabled: bool,
    created_by: str | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned once, stored sealed)."""
    count = len((await session.execute(owned(select(WebhookEndpoint.id), org_id))).scalars().all())
    if count >= settings.webhooks_max_per_org:
        raise TooManyWebhooks(details={"limit": settings.webhooks_max_per_org})
    await transport.check_url(url, settings)
    secret = transport.new_secret()
    endpoint = WebhookEndpoint(
        org_id=org_id,
        url=url,
        description=description,
        event_types=event_types,
        enabled=enabled,
        secret_sealed=seal_secret(settings, secret),
        created_by=created_by,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def update_endpoint(
    session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint, changes: dict[str, Any]
) -> str | None:
    """Apply `changes`; the new secret when one was asked for (rotate_secret)."""
    new_secret = None
    if "url" in changes and changes["url"] != endpoint.url:
        await transport.check_url(changes["url"], settings)
        endpoint.url = changes["url"]
    for field in ("description", "event_types"):
        if field in changes:
            setattr(endpoint, field, changes[field])
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.failing_since = None
            endpoint.disabled_reason = None
        else:
            endpoint.disabled_reason = "by_user"
    if changes.get("rotate_secret"):
        new_secret = transport.new_secret()
        endpoint.previous_secret_sealed = endpoint.secret_sealed
        endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
        endpoint.secret_sealed = seal_secret(settings, new_secret)
    endpoint.updated_at = utcnow()
    await session.flush()
    return new_secret


# --- deliveries ---


def next_delay(attempt: int) -> timedelta | None:
    """The wait after failed attempt number `attempt` (1-based); None: the schedule is spent."""
    if attempt > len(RETRY_DELAYS_S):
        return None
    base = RETRY_DELAYS_S[attempt - 1]
    return timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))


async def attempt(
    session: AsyncSession,
    settings: Settings,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    *,
    retry: bool = True,
) -> WebhookAttempt:
    """Send `delivery` once and record it: delivered, or the next attempt scheduled (with a
    send job), or dead-lettered when the schedule is spent. The caller holds the row's lock."""
    body = json.dumps(delivery.body, separators=(",", ":"))
    outcome = await transport.send(
        endpoint.url, live_secrets(settings, endpoint), delivery.id, body, settings
    )
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    next_at = None
    if outcome.succeeded:
        delivery.status = "delivered"
        delivery.finished_at = now
        delivery.next_attempt_at = None
    else:
        delay = next_delay(delivery.attempts) if retry else None
        if delay is None:
            delivery.status = "dead" if retry else "failed"
            delivery.finished_at = now
            delivery.next_attempt_at = None
        else:
            next_at = now + delay
            delivery.next_attempt_at = next_at
            await enqueue(session, SEND_JOB, {"delivery_id": delivery.id}, run_at=next_at)
    row = WebhookAttempt(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        attempt=delivery.attempts,
        status_code=outcome.status_code,
        duration_ms=outcome.duration_ms,
        response_excerpt=outcome.excerpt,
        error=outcome.error,
        succeeded=outcome.succeeded,
        next_attempt_at=next_at,
    )
    session.add(row)
    if retry:
        await _track_health(session, settings, endpoint, outcome.succeeded)
    await session.flush()
    return row


async def _track_health(
    session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint, succeeded: bool
) -> None:
    """An endpoint whose every attempt has failed for webhooks_disable_after_s is disabled,
    its pending deliveries dead-lettered, and webhook.disabled emitted (its owners are told)."""
    now = utcnow()
    if succeeded:
        endpoint.failing_since = None
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        return
    if not endpoint.enabled or now - endpoint.failing_since < timedelta(
        seconds=settings.webhooks_disable_after_s
    ):
        return
    endpoint.enabled = False
    endpoint.disabled_reason = "failing"
    endpoint.updated_at = now
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
        .values(status="dead", finished_at=now, next_attempt_at=None)
    )
    await emit(
        session,
        WebhookDisabledEvent(
            org_id=endpoint.org_id,
            resource_id=endpoint.id,
            actor=SYSTEM,
            url=endpoint.url,
            failing_since=endpoint.failing_since,
        ),
    )


async def _locked(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """The delivery, locked for this transaction; None when another worker is sending it."""
    return (
        await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()


async def send_if_due(
    session: AsyncSession, settings: Settings, delivery_id: str
) -> WebhookAttempt | None:
    """Attempt the delivery if it is pending and due (a stale or duplicate job does nothing)."""
    delivery = await _locked(session, delivery_id)
    if delivery is None or delivery.status != "pending":
        return None
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > utcnow():
        return None
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        delivery.status = "cancelled"
        delivery.finished_at = utcnow()
        return None
    return await attempt(session, settings, delivery, endpoint)


@job(SEND_JOB)
async def send_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    """One attempt of one delivery. The row lock is held across the request, so two workers
    never send the same delivery at once; a worker that dies mid-request rolls back, and the
    job's next run sends again under the same webhook-id."""
    await send_if_due(ctx.session, ctx.settings, payload["delivery_id"])


@dataclass
class QueueRun:
    attempted: int
    delivered: int


async def process_queue(session: AsyncSession, settings: Settings, limit: int) -> QueueRun:
    """Attempt every pending delivery that is due now (oldest first, up to `limit`)."""
    due = (
        (
            await session.execute(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == "pending",
                    or_(
                        WebhookDelivery.next_attempt_at.is_(None),
                        WebhookDelivery.next_attempt_at <= utcnow(),
                    ),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    run = QueueRun(0, 0)
    for delivery_id in due:
        made = await send_if_due(session, settings, delivery_id)
        if made is not None:
            run.attempted += 1
            run.delivered += int(made.succeeded)
    return run


async def send_test(
    session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint, actor: Actor
) -> WebhookAttempt:
    """Send webhook.test to this endpoint now, once (no retries); also to a disabled one."""
    event = WebhookTest(
        org_id=endpoint.org_id, resource_id=endpoint.id, actor=actor, url=endpoint.url
    )
    now = utcnow()
    event_id = new_id("evt")
    data = EventOut(
        id=event_id,
        type=event.type,
        version=event.version,
        created_at=now,
        org_id=event.org_id,
        resource_type=event.resource_type,
        resource_id=event.resource_id,
        actor=actor,
        payload=event.payload(),
    )
    delivery = WebhookDelivery(
        org_id=endpoint.org_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event.type,
        body={"type": event.type, "timestamp": rfc3339(now), "data": data.model_dump(mode="json")},
        status="pending",
        attempts=0,
        next_attempt_at=now,
    )
    session.add(delivery)
    await session.flush()
    return await attempt(session, settings, delivery, endpoint, retry=False)


# --- the dead-letter queue (staff) ---


async def retry_dead(session: AsyncSession, delivery_id: str) -> WebhookDelivery:
    delivery = (
        await session.get(WebhookDelivery, delivery_id) if has_prefix(delivery_id, "msg") else None
    )
    if delivery is None:
        raise NotFound.of("Delivery", delivery_id)
    if delivery.status != "dead":
        raise NotDeadLettered(details={"status": delivery.status})
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise WebhookDisabled(details={"webhook_id": delivery.endpoint_id})
    now = utcnow()
    delivery.status = "pending"
    delivery.finished_at = None
    delivery.next_attempt_at = now
    # The schedule starts over (attempt numbers in the deliveries list start again at 1).
    delivery.attempts = 0
    await enqueue(session, SEND_JOB, {"delivery_id": delivery.id})
    await session.flush()
    return delivery


async def reap_dead(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.status == "dead", WebhookDelivery.finished_at < older_than)
        .returning(WebhookDelivery.id)
    )
    return len(result.all())
