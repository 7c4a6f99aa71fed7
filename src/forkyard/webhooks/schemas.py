"""Request and response shapes of webhooks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from forkyard.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPES_DOC = 'Event types to receive (see the catalogue), or ["*"] for all.'


def _known_types(value: list[str] | None) -> list[str] | None:
    from forkyard.webhooks.events import WebhookTest, public_event_types

    if value is None:
        return value
    if not value:
        raise ValueError('give at least one event type, or ["*"]')
    known = {cls.type for cls in public_event_types()} - {WebhookTest.type}
    unknown = sorted(set(value) - known - {"*"})
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)}")
    return sorted(set(value))


class WebhookCreate(BaseModel):
    url: str = Field(min_length=1, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(default=["*"], description=EVENT_TYPES_DOC, max_length=100)
    enabled: bool = True

    _types = field_validator("event_types")(_known_types)


class WebhookUpdate(BaseModel):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, description=EVENT_TYPES_DOC, max_length=100)
    enabled: bool | None = None
    rotate_secret: bool | None = Field(
        default=None,
        description="Issue a new secret (returned once); the old one also signs for 24 hours.",
    )

    _types = field_validator("event_types")(_known_types)


class Webhook(BaseModel):
    id: str
    org_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None = Field(description="by_user, or failing (disabled by us).")
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def of(cls, e: WebhookEndpoint) -> Webhook:
        return cls(
            id=e.id,
            org_id=e.org_id,
            url=e.url,
            description=e.description,
            event_types=list(e.event_types),
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            failing_since=e.failing_since,
            previous_secret_expires_at=e.previous_secret_expires_at,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class WebhookWithSecret(Webhook):
    secret: str | None = Field(
        description="The signing secret (whsec_...): only in the answer that made it; store it."
    )


class WebhookAttemptOut(BaseModel):
    id: str
    webhook_id: str
    delivery_id: str = Field(description="The webhook-id header: the same on every attempt.")
    event_id: str
    event_type: str
    attempt: int
    succeeded: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None
    next_attempt_at: datetime | None
    delivery_status: str = Field(description="pending, delivered, dead, cancelled, failed (tests).")
    created_at: datetime

    @classmethod
    def of(cls, a: WebhookAttempt, d: WebhookDelivery) -> WebhookAttemptOut:
        return cls(
            id=a.id,
            webhook_id=a.endpoint_id,
            delivery_id=a.delivery_id,
            event_id=d.event_id,
            event_type=d.event_type,
            attempt=a.attempt,
            succeeded=a.succeeded,
            status_code=a.status_code,
            duration_ms=a.duration_ms,
            response_excerpt=a.response_excerpt,
            error=a.error,
            next_attempt_at=a.next_attempt_at,
            delivery_status=d.status,
            created_at=a.created_at,
        )


class DeliveryOut(BaseModel):
    id: str
    org_id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=d.id,
            org_id=d.org_id,
            webhook_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            next_attempt_at=d.next_attempt_at,
            created_at=d.created_at,
            finished_at=d.finished_at,
        )


class ReapRequest(BaseModel):
    older_than: int = Field(
        ge=0, description="Seconds: dead letters that reached the queue longer ago are deleted."
    )


class ReapResult(BaseModel):
    reaped: int


class ProcessQueueResult(BaseModel):
    attempted: int
    delivered: int
