"""How an event is shown: by the events API, and as the `data` of a webhook delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from forkyard.events.kernel import Actor
from forkyard.events.models import EventRecord


class EventOut(BaseModel):
    id: str
    type: str
    version: int
    created_at: datetime
    org_id: str | None
    resource_type: str
    resource_id: str
    actor: Actor
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: EventRecord) -> EventOut:
        return cls(
            id=row.id,
            type=row.type,
            version=row.version,
            created_at=row.created_at,
            org_id=row.org_id,
            resource_type=row.resource_type,
            resource_id=row.resource_id,
            actor=Actor(type=row.actor_type, id=row.actor_id),
            payload=row.payload,
        )
